package server

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/duplexhq/duplex/msg"
)

// pathChannel returns the {channel} of r's path once it is valid and the
// request's token allows action on it; otherwise it writes the error and
// returns false.
func (s *Server) pathChannel(w http.ResponseWriter, r *http.Request, action Action) (string, bool) {
	channel := r.PathValue("channel")
	if !msg.ValidChannel(channel) {
		writeError(w, invalidChannel(channel))
		return "", false
	}
	if err := s.authorize(r.Context(), action, channel); err != nil {
		writeError(w, err)
		return "", false
	}
	return channel, true
}

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	channel, ok := s.pathChannel(w, r, ActionPublish)
	if !ok {
		return
	}
	if r.ContentLength > s.cfg.MaxBody {
		// Refuse before reading a byte, and don't let net/http drain it.
		w.Header().Set("Connection", "close")
		writeError(w, msg.Errorf(msg.CodeTooLarge, "body is %d bytes, larger than %d", r.ContentLength, s.cfg.MaxBody))
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		var me *msg.Error // request_timeout, from the body deadline
		if !errors.As(err, &mbe) && !errors.As(err, &me) {
			err = msg.Errorf(msg.CodeBadRequest, "read body: %v", err)
		}
		w.Header().Set("Connection", "close")
		writeError(w, err)
		return
	}
	p, err := s.hub.Publish(r.Context(), channel, body)
	if err != nil {
		writeError(w, err)
		return
	}
	writePublished(w, p.Channel, p.Epoch, p.Offset, p.Time)
}

// readBody is io.ReadAll with its first buffer sized for the declared
// length (size, -1 when unknown), so a publish body of known length is read
// into one allocation of its size instead of a 512-byte one, or several
// growing ones for larger bodies. The caller bounds size (and r).
func readBody(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, size+1) // +1: room to see EOF without growing
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// writePublished writes the 201 answer to a publish: the bytes
// writeJSON(w, http.StatusCreated, msg.Published{...}) writes, without
// reflection and boxing, since this is the hottest answer of the REST API.
// Channel names never need escaping in JSON; an epoch is [a-z0-9], but
// one that is not goes through writeJSON.
func writePublished(w http.ResponseWriter, channel, epoch string, offset uint64, timeMs int64) {
	for i := 0; i < len(epoch); i++ {
		if c := epoch[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			writeJSON(w, http.StatusCreated, msg.Published{Channel: channel, Epoch: epoch, Offset: offset, Time: timeMs})
			return
		}
	}
	b := make([]byte, 0, 64+len(channel)+len(epoch))
	b = append(b, `{"channel":"`...)
	b = append(b, channel...)
	b = append(b, `","epoch":"`...)
	b = append(b, epoch...)
	b = append(b, `","offset":`...)
	b = strconv.AppendUint(b, offset, 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, timeMs, 10)
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusCreated)
	w.Write(b)
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	channel, ok := s.pathChannel(w, r, ActionSubscribe)
	if !ok {
		return
	}
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" || q.Has("after") {
		n, err := msg.ParseOffset(v)
		if err != nil {
			writeError(w, msg.Errorf(msg.CodeBadRequest, "after=%q is not an offset (a whole number ≥ 0)", truncate(v)))
			return
		}
		after = n
	}
	limit := msg.DefaultHistoryLimit
	if v := q.Get("limit"); v != "" || q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > msg.MaxHistoryLimit {
			writeError(w, msg.Errorf(msg.CodeBadRequest, "limit=%q must be a whole number from 1 to %d", truncate(v), msg.MaxHistoryLimit))
			return
		}
		limit = n
	}
	st, pubs, err := s.hub.History(r.Context(), channel, after, limit)
	if err != nil {
		writeError(w, err)
		return
	}
	// The messages are pre-encoded: splice them in rather than decode and
	// encode them again.
	size := 128 + len(channel)
	for _, p := range pubs {
		size += len(p.JSON) + 1
	}
	b := append(make([]byte, 0, size), '{')
	b, _ = historyPage(channel, st, after, 0).AppendMembers(b, len(pubs), pubAt(pubs))
	b = append(b, "}\n"...)

	hash := fnv.New64a()
	hash.Write(b)
	etag := fmt.Sprintf(`"%016x"`, hash.Sum64())
	h := w.Header()
	h.Set("ETag", etag)
	if len(pubs) == limit {
		// A full page holds the same messages forever.
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// etagMatch implements If-None-Match's weak comparison (RFC 9110 §13.1.2).
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	if strings.TrimSpace(header) == "*" {
		return true
	}
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		tag = strings.TrimPrefix(tag, "W/")
		if tag == etag {
			return true
		}
	}
	return false
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	channel, ok := s.pathChannel(w, r, ActionSubscribe)
	if !ok {
		return
	}
	info, err := s.hub.Info(r.Context(), channel)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, info)
}

// echoReply is what GET /v1/echo answers: the request as the hub saw it.
type echoReply struct {
	Method     string              `json:"method"`
	RemoteAddr string              `json:"remote_addr"`
	Headers    map[string][]string `json:"headers"`
}

func (s *Server) handleEcho(w http.ResponseWriter, r *http.Request) {
	if isWebSocketUpgrade(r) {
		s.handleEchoWS(w, r)
		return
	}
	hdr := make(map[string][]string, len(r.Header)+1)
	for k, v := range r.Header {
		hdr[k] = v
	}
	hdr["Host"] = []string{r.Host}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, echoReply{Method: r.Method, RemoteAddr: r.RemoteAddr, Headers: hdr})
}

// healthReply is what GET /healthz answers: status "ok", or
// "unavailable" beside the error (the shape of every error answer), so a
// load balancer may read either the status code or the body.
type healthReply struct {
	Status string     `json:"status"`
	Error  *msg.Error `json:"error,omitempty"`
}

// handleHealth answers 200 while the hub can serve, 503 while it shuts
// down or its engine cannot reach its store (hub.Healthy, bounded by
// hub.HealthTimeout: a stalled Redis never holds a health check).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	err := error(nil)
	if closed {
		err = msg.Errorf(msg.CodeUnavailable, "shutting down")
	} else {
		err = s.hub.Healthy(r.Context())
	}
	var me *msg.Error
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, healthReply{Status: "ok"})
	case errors.As(err, &me):
		writeJSON(w, me.Code.HTTPStatus(), healthReply{Status: string(me.Code), Error: me})
	default:
		writeError(w, err)
	}
}

func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func invalidChannel(name string) error {
	return msg.Errorf(msg.CodeInvalidChannel, "invalid channel name %q: 1-128 bytes of A-Z a-z 0-9 _ . : @ -", truncate(name))
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
