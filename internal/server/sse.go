package server

import (
	"net/http"
	"strconv"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// handleSSE serves GET /v1/sse: Server-Sent Events, readable by a browser's
// EventSource as it is.
//
// The stream opens with a retry: field (Config.SSERetry) and an event block
// that holds only id: <starting cursor>. A block without data dispatches no
// event, but it sets the EventSource's last event ID, so a browser that
// reconnects before any message arrived still resumes from where it began
// rather than from "now". Every message is id: <cursor after it>,
// event: message, data: <envelope>; every gap the same with event: gap. A
// comment (": heartbeat") follows every Config.Heartbeat of silence. The
// Last-Event-ID header, which browsers send when they reconnect, wins over
// cursor=.
func (s *Server) handleSSE(w http.ResponseWriter, r *http.Request) {
	req, err := s.parseSubRequest(r, r.Header.Get("Last-Event-ID"))
	if err != nil {
		writeError(w, err)
		return
	}
	s.serveStream(w, r, req, "text/event-stream", sseFramer{retryMs: s.cfg.SSERetry.Milliseconds()})
}

// sseFramer frames text/event-stream blocks.
type sseFramer struct {
	retryMs int64
}

func (f sseFramer) start(b []byte, cur msg.Cursor, names []string) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, f.retryMs, 10)
	b = append(b, "\nid: "...)
	b = cur.AppendTextOrdered(b, names)
	return append(b, "\n\n"...)
}

func (sseFramer) item(b []byte, it hub.Item, cur msg.Cursor, names []string) []byte {
	if it.Event != nil {
		// No id: a join or leave does not move the cursor, and an event
		// without one leaves the browser's last event ID as it was.
		b = append(b, "event: "...)
		b = append(b, it.Event.Type...)
		b = append(b, "\ndata: "...)
		b = append(b, it.Event.JSON...)
		return append(b, "\n\n"...)
	}
	b = append(b, "id: "...)
	b = cur.AppendTextOrdered(b, names)
	if it.Pub != nil {
		b = append(b, "\nevent: message\ndata: "...)
		b = append(b, it.Pub.JSON...)
	} else {
		b = append(b, "\nevent: gap\ndata: "...)
		b = it.Gap.AppendJSON(b)
	}
	return append(b, "\n\n"...)
}

func (sseFramer) heartbeat(b []byte, _ msg.Cursor, _ []string) []byte {
	return append(b, ": heartbeat\n\n"...)
}
