package server

import (
	"net/http"

	"github.com/duplexhq/duplex/msg"
)

// handleStream serves GET /v1/stream. (Stub: issue 4.)
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	writeError(w, msg.Errorf(msg.CodeNotFound, "stream transport not built yet"))
}
