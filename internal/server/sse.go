package server

import (
	"net/http"

	"github.com/duplexhq/duplex/msg"
)

// handleSSE serves GET /v1/sse. (Stub: issue 4.)
func (s *Server) handleSSE(w http.ResponseWriter, r *http.Request) {
	writeError(w, msg.Errorf(msg.CodeNotFound, "sse transport not built yet"))
}
