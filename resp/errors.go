package resp

import (
	"errors"
	"fmt"
)

// Request errors. Their texts are redis-server's own (networking.c), so a
// client sees "-ERR Protocol error: ..." exactly as if it talked to redis.
// Every one of them means the connection is out of sync: reply and close.
var (
	ErrInvalidMultibulkLength         = errors.New("Protocol error: invalid multibulk length")
	ErrInvalidBulkLength              = errors.New("Protocol error: invalid bulk length")
	ErrTooBigInline                   = errors.New("Protocol error: too big inline request")
	ErrTooBigMultibulkCount           = errors.New("Protocol error: too big mbulk count string")
	ErrTooBigBulkCount                = errors.New("Protocol error: too big bulk count string")
	ErrUnbalancedQuotes               = errors.New("Protocol error: unbalanced quotes in request")
	ErrUnauthenticatedMultibulkLength = errors.New("Protocol error: unauthenticated multibulk length")
	ErrUnauthenticatedBulkLength      = errors.New("Protocol error: unauthenticated bulk length")

	// ErrExpectedBulk is wrapped by the error returned when a multibulk
	// argument does not start with '$'; that error's text names the byte
	// found instead, as redis does: "Protocol error: expected '$', got 'X'".
	ErrExpectedBulk = errors.New("Protocol error: expected '$'")

	// ErrBulkNotTerminated: bulk data not followed by CRLF. redis-server
	// does not check these two bytes (it skips them), so it has no text for
	// this; we refuse the frame because the declared length is a lie and
	// everything after it would be parsed out of sync.
	ErrBulkNotTerminated = errors.New("Protocol error: bulk data not terminated by CRLF")
)

// Reply errors: the backend (or something pretending to be one) sent bytes
// that are not one well-formed RESP2/RESP3 reply. The backend connection is
// out of sync and must be dropped.
var (
	ErrReplyType     = errors.New("Protocol error: invalid reply type byte")
	ErrReplyLength   = errors.New("Protocol error: invalid reply length")
	ErrReplyCRLF     = errors.New("Protocol error: expected CRLF in reply")
	ErrReplyTooBig   = errors.New("Protocol error: too big reply line")
	ErrReplyValue    = errors.New("Protocol error: invalid reply value")
	ErrReplyStreamed = errors.New("Protocol error: streamed RESP3 replies are not supported")
)

// expectedBulk builds the "expected '$', got 'X'" error. Like redis's
// addReplyErrorFormat it turns CR and LF into spaces, so the text can be
// sent as an error reply verbatim.
func expectedBulk(got byte) error {
	if got == '\r' || got == '\n' {
		got = ' '
	}
	return fmt.Errorf("%w, got '%s'", ErrExpectedBulk, []byte{got})
}
