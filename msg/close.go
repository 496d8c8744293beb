package msg

import (
	"errors"
	"strconv"
)

// CloseCode is why a session ended. It is shared by the hub, every transport,
// logs and metrics; on WebSocket it is the close code on the wire.
//
// A client should reconnect, resuming from its cursor, after CloseGoingAway,
// CloseInternal, CloseSlow and CloseAbnormal (and after any transport failure
// without a code). It should not reconnect unchanged after ClosePolicy,
// CloseUnsupported, CloseInvalidPayload or CloseTooBig: the same request will
// be refused again.
type CloseCode uint16

// Close codes (RFC 6455 §7.4.1 numbering).
const (
	CloseNormal         CloseCode = 1000 // the peer asked to close
	CloseGoingAway      CloseCode = 1001 // hub shutting down
	CloseProtocol       CloseCode = 1002 // protocol error
	CloseUnsupported    CloseCode = 1003 // binary frame, or a text frame that is not a JSON object
	CloseAbnormal       CloseCode = 1006 // no close frame: the connection just ended (see below)
	CloseInvalidPayload CloseCode = 1007 // invalid UTF-8
	ClosePolicy         CloseCode = 1008 // auth, origin, limits
	CloseTooBig         CloseCode = 1009 // frame over the limit
	CloseInternal       CloseCode = 1011 // hub fault
	CloseSlow           CloseCode = 1013 // outbound queue overflowed: slow consumer
)

// CloseAbnormal is never sent: RFC 6455 §7.1.5 gives it to a connection
// that ended without a close frame, and clients report it so. The hub ends
// a connection that way when a write does not complete within its write
// timeout — most often a slow consumer whose socket is full, so its 1013
// close frame cannot be written — and when a peer stops answering pings.
// It means what CloseSlow means: reconnect and resume from the cursor.
//
// CloseShutdown is the code sessions get when the hub shuts down.
const CloseShutdown = CloseGoingAway

func (c CloseCode) String() string {
	switch c {
	case CloseNormal:
		return "normal"
	case CloseGoingAway:
		return "shutdown"
	case CloseProtocol:
		return "protocol_error"
	case CloseUnsupported:
		return "unsupported_data"
	case CloseAbnormal:
		return "abnormal"
	case CloseInvalidPayload:
		return "invalid_payload"
	case ClosePolicy:
		return "policy"
	case CloseTooBig:
		return "too_big"
	case CloseInternal:
		return "internal"
	case CloseSlow:
		return "slow_consumer"
	}
	return "close_" + strconv.Itoa(int(c))
}

// Reconnect reports whether a client should reconnect after c.
func (c CloseCode) Reconnect() bool {
	switch c {
	case ClosePolicy, CloseUnsupported, CloseInvalidPayload, CloseTooBig, CloseProtocol:
		return false
	}
	return true
}

// CloseError is a session ended with a close code.
type CloseError struct {
	Code   CloseCode
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return "closed: " + e.Code.String()
	}
	return "closed: " + e.Code.String() + ": " + e.Reason
}

// CloseCodeOf returns the code of the first *CloseError in err's chain, or 0
// when there is none.
func CloseCodeOf(err error) CloseCode {
	var e *CloseError
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}
