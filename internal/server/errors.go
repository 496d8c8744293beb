package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/duplexhq/duplex/msg"
)

// writeError is the one place that maps an error to an HTTP status and body.
func writeError(w http.ResponseWriter, err error) {
	var me *msg.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &me):
	case errors.As(err, &mbe):
		me = msg.Errorf(msg.CodeTooLarge, "body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		me = msg.Errorf(msg.CodeUnavailable, "request canceled")
	default:
		me = msg.Errorf(msg.CodeInternal, "internal error")
	}
	status := me.Code.HTTPStatus()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Del("ETag")
	if me.Code == msg.CodeRateLimited && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "1")
	}
	if me.Code == msg.CodeRequestTimeout {
		// The rest of the body may still be on its way: the connection
		// cannot carry another request.
		h.Set("Connection", "close")
	}
	if me.Code == msg.CodeUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="duplex"`)
	}
	body, _ := json.Marshal(msg.ErrorBody{Error: me})
	body = append(body, '\n')
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, err)
		return
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
