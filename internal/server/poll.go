package server

import (
	"net/http"

	"github.com/duplexhq/duplex/msg"
)

// handlePoll serves GET /v1/poll. (Stub: issue 4.)
func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	writeError(w, msg.Errorf(msg.CodeNotFound, "poll transport not built yet"))
}
