package resp

import "math"

// Limits bounds what a peer may make us buffer. Zero (or negative) fields
// mean "use the default"; the defaults are redis-server's own.
//
// A Limits is a plain value: copy it freely.
type Limits struct {
	// MaxInlineBytes caps an inline request line (without its newline).
	// Zero means 64 KiB, redis PROTO_INLINE_MAX_SIZE.
	MaxInlineBytes int
	// MaxBulkBytes caps one bulk argument of a request and one string
	// (bulk, blob error, verbatim, simple string or error line) of a reply.
	// Zero means 512 MiB, redis proto-max-bulk-len.
	MaxBulkBytes int64
	// MaxArrayLen caps the argument count of a multibulk request and the
	// element count of one reply aggregate (map and attribute counts are in
	// pairs). Zero means math.MaxInt32: redis rejects a multibulk length
	// above INT_MAX. Larger values are clamped to math.MaxInt32.
	MaxArrayLen int64
	// Unauthenticated selects redis's "unauthenticated multibulk/bulk
	// length" error texts when a request exceeds MaxArrayLen or
	// MaxBulkBytes, so clients see what redis itself would tell them before
	// AUTH. It does not change any limit.
	Unauthenticated bool
}

const (
	defaultMaxInlineBytes = 64 << 10
	defaultMaxBulkBytes   = 512 << 20
	defaultMaxArrayLen    = math.MaxInt32

	// Hard ceilings keep offset arithmetic (start+len+2) from overflowing an
	// int, including on 32-bit platforms.
	maxInlineCeiling = 1 << 30
	maxBulkCeiling   = int64(math.MaxInt >> 2)

	// Redis's caps for a client that has not authenticated yet
	// (processMultibulkBuffer: "ll > 10 && authRequired(c)", "ll > 16384").
	unauthMaxArrayLen  = 10
	unauthMaxBulkBytes = 16384

	// maxCountBytes is how long the number in a "*n", "$n" (or any reply
	// header or integer) line may be before we give up waiting for its CR.
	// No valid int64 needs more than 20 bytes; redis waits for 64 KiB before
	// saying "too big mbulk count string", we fail earlier and keep Need()
	// small. Either way the connection is closed.
	maxCountBytes = 32
)

// DefaultLimits returns redis-server's defaults for an authenticated client.
func DefaultLimits() Limits {
	return Limits{
		MaxInlineBytes: defaultMaxInlineBytes,
		MaxBulkBytes:   defaultMaxBulkBytes,
		MaxArrayLen:    defaultMaxArrayLen,
	}
}

// UnauthenticatedLimits returns the caps redis-server applies to a client
// before it authenticates: at most 10 arguments of at most 16384 bytes.
func UnauthenticatedLimits() Limits {
	return Limits{
		MaxInlineBytes:  defaultMaxInlineBytes,
		MaxBulkBytes:    unauthMaxBulkBytes,
		MaxArrayLen:     unauthMaxArrayLen,
		Unauthenticated: true,
	}
}

// normalized fills in defaults and clamps every field to what the parsers
// can represent, so the hot path never re-checks them.
func (l Limits) normalized() Limits {
	if l.MaxInlineBytes <= 0 {
		l.MaxInlineBytes = defaultMaxInlineBytes
	}
	if l.MaxInlineBytes > maxInlineCeiling {
		l.MaxInlineBytes = maxInlineCeiling
	}
	if l.MaxBulkBytes <= 0 {
		l.MaxBulkBytes = defaultMaxBulkBytes
	}
	if l.MaxBulkBytes > maxBulkCeiling {
		l.MaxBulkBytes = maxBulkCeiling
	}
	if l.MaxArrayLen <= 0 || l.MaxArrayLen > math.MaxInt32 {
		l.MaxArrayLen = defaultMaxArrayLen
	}
	return l
}
