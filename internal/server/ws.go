package server

import (
	"net/http"

	"github.com/duplexhq/duplex/msg"
)

// handleWS serves GET /v1/ws. (Stub: the WebSocket transport is issue 3.)
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	writeError(w, msg.Errorf(msg.CodeNotFound, "WebSocket transport not built yet"))
}

// handleEchoWS serves GET /v1/echo with Upgrade: websocket. (Stub.)
func (s *Server) handleEchoWS(w http.ResponseWriter, r *http.Request) {
	writeError(w, msg.Errorf(msg.CodeNotFound, "WebSocket echo not built yet"))
}
