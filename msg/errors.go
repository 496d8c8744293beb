package msg

import (
	"errors"
	"fmt"
)

// Code is a machine-readable error code, the "code" member of every error the
// hub returns over HTTP or as a WebSocket error reply.
type Code string

// Error codes of the wire contract, with the HTTP status each maps to.
const (
	CodeInvalidChannel Code = "invalid_channel"    // 400
	CodeInvalidCursor  Code = "invalid_cursor"     // 400
	CodeInvalidJSON    Code = "invalid_json"       // 400
	CodeBadRequest     Code = "bad_request"        // 400
	CodeUnauthorized   Code = "unauthorized"       // 401
	CodeForbidden      Code = "forbidden"          // 403
	CodeNotFound       Code = "not_found"          // 404
	CodeMethodNotAllow Code = "method_not_allowed" // 405
	CodeRequestTimeout Code = "request_timeout"    // 408: a body sent too slowly; the connection is closed
	CodeTooLarge       Code = "message_too_large"  // 413
	CodeRateLimited    Code = "rate_limited"       // 429
	CodeInternal       Code = "internal"           // 500
	CodeUnavailable    Code = "unavailable"        // 503
)

// HTTPStatus is the HTTP status that goes with c.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeInvalidChannel, CodeInvalidCursor, CodeInvalidJSON, CodeBadRequest:
		return 400
	case CodeUnauthorized:
		return 401
	case CodeForbidden:
		return 403
	case CodeNotFound, CodePresenceOff:
		return 404
	case CodeMethodNotAllow:
		return 405
	case CodeRequestTimeout:
		return 408
	case CodeTooLarge, CodeInfoTooLarge:
		return 413
	case CodeRateLimited:
		return 429
	case CodeUnavailable:
		return 503
	default:
		return 500
	}
}

// Error is a protocol error: a code and a human-readable message. Its JSON
// form over HTTP is {"error":{"code":...,"message":...}}.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with code c and a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the Code of the first *Error in err's chain, or
// CodeInternal when there is none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorBody is the JSON body of an HTTP error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}
