package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// ErrProtocol is wrapped by every error that says the hub (or something
// pretending to be it) sent bytes that break the duplex wire contract:
// garbage lines, truncated frames, impossible offsets.
var ErrProtocol = errors.New("protocol error")

// StatusError is an HTTP error answer from the hub. It unwraps to the
// *msg.Error of the body, so msg.CodeOf works on it.
type StatusError struct {
	StatusCode int
	// Err is the error the body carried, or one made up from the status
	// when the body was not a duplex error.
	Err *msg.Error
	// RetryAfter is the Retry-After of a 429 or 503, or zero.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	if e.StatusCode == http.StatusProxyAuthRequired {
		return "proxy answered 407 Proxy Authentication Required: check the user:password of the proxy URL"
	}
	return fmt.Sprintf("hub answered %d %s: %v", e.StatusCode, http.StatusText(e.StatusCode), e.Err)
}

func (e *StatusError) Unwrap() error { return e.Err }

// maxErrorBody bounds the error body read from a failed response.
const maxErrorBody = 64 << 10

// statusError reads resp's error body into a *StatusError. It does not
// close the body.
func statusError(resp *http.Response) *StatusError {
	e := &StatusError{StatusCode: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var eb msg.ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		e.Err = eb.Error
	} else {
		e.Err = &msg.Error{Code: codeForStatus(resp.StatusCode), Message: "no duplex error body (" + resp.Status + ")"}
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < 3600 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

func codeForStatus(status int) msg.Code {
	switch status {
	case 400:
		return msg.CodeBadRequest
	case 401:
		return msg.CodeUnauthorized
	case 403:
		return msg.CodeForbidden
	case 404:
		return msg.CodeNotFound
	case 405:
		return msg.CodeMethodNotAllow
	case 413:
		return msg.CodeTooLarge
	case 429:
		return msg.CodeRateLimited
	case 503:
		return msg.CodeUnavailable
	}
	return msg.CodeInternal
}

// UnsupportedError says a transport is not available at the hub (or not
// through the proxy in between): a WebSocket upgrade answered with a plain
// HTTP status, an endpoint that does not exist, the wrong content type.
// Auto falls back to the next transport on it.
type UnsupportedError struct {
	Transport Transport
	Err       error
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("transport %s unavailable: %v", e.Transport, e.Err)
}

func (e *UnsupportedError) Unwrap() error { return e.Err }

func isUnsupported(err error) bool {
	var u *UnsupportedError
	return errors.As(err, &u)
}

// retryableStatus reports whether an HTTP status is worth retrying.
func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || (code >= 500 && code != http.StatusNotImplemented)
}

// unsupportedStatus reports whether a status on a subscribing endpoint
// means "this transport is not here".
func unsupportedStatus(code int) bool {
	switch code {
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotAcceptable,
		http.StatusNotImplemented, http.StatusUpgradeRequired:
		return true
	}
	return false
}

// fatal reports whether a subscription must stop retrying after err: the
// same request would be refused again. Close codes decide by
// msg.CloseCode.Reconnect: 1001, 1011, 1013 and 1006 (a WebSocket that
// ended without a close frame, see [wsEnded]) are retried from the cursor;
// 1002, 1003, 1007, 1008 and 1009 are not.
func fatal(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return !retryableStatus(se.StatusCode)
	}
	if code := msg.CloseCodeOf(err); code != 0 {
		return !code.Reconnect()
	}
	var me *msg.Error
	if errors.As(err, &me) {
		switch me.Code {
		case msg.CodeRateLimited, msg.CodeUnavailable, msg.CodeInternal:
			return false
		}
		return true
	}
	if isUnsupported(err) || errors.Is(err, ErrProtocol) {
		return true
	}
	return false
}

// checkEnvelope checks what every envelope must be.
func checkEnvelope(e *msg.Envelope) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return nil
}

// checkGap checks what every gap notice must be.
func checkGap(g *msg.Gap) error {
	if err := g.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return nil
}
