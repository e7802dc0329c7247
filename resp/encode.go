package resp

import (
	"strconv"
	"strings"
)

// The Append* encoders append one RESP value to dst and return the extended
// slice, like strconv.Append*: they allocate only when dst must grow, so a
// caller that reuses its output buffer encodes without allocating. They are
// plain functions, safe for concurrent use on distinct dst.
//
// proto is the client's protocol version (2 or 3, from HELLO); anything but
// 3 means RESP2.

// AppendSimple appends the simple string +s\r\n. CR and LF in s become
// spaces: a simple string cannot carry them, and letting one through would
// desynchronise the client.
func AppendSimple(dst []byte, s string) []byte {
	dst = append(dst, '+')
	return appendLine(dst, s)
}

// AppendError appends the error -msg\r\n. msg carries its own prefix
// ("ERR foo", "NOREPLICAS ..."). CR and LF in msg become spaces, as in
// redis's addReplyErrorLength, because error texts often quote user input.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	return appendLine(dst, msg)
}

func appendLine(dst []byte, s string) []byte {
	if strings.IndexByte(s, '\r') < 0 && strings.IndexByte(s, '\n') < 0 {
		dst = append(dst, s...)
		return append(dst, '\r', '\n')
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// AppendInt appends the integer :n\r\n.
func AppendInt(dst []byte, n int64) []byte {
	return appendHeader(dst, ':', n)
}

// AppendBulk appends the bulk string $len\r\nb\r\n.
func AppendBulk(dst []byte, b []byte) []byte {
	dst = appendHeader(dst, '$', int64(len(b)))
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString appends s as a bulk string.
func AppendBulkString(dst []byte, s string) []byte {
	dst = appendHeader(dst, '$', int64(len(s)))
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendNull appends a null string: $-1\r\n in RESP2, _\r\n in RESP3.
func AppendNull(dst []byte, proto int) []byte {
	if proto == 3 {
		return append(dst, '_', '\r', '\n')
	}
	return append(dst, '$', '-', '1', '\r', '\n')
}

// AppendNullArray appends a null array: *-1\r\n in RESP2, _\r\n in RESP3.
func AppendNullArray(dst []byte, proto int) []byte {
	if proto == 3 {
		return append(dst, '_', '\r', '\n')
	}
	return append(dst, '*', '-', '1', '\r', '\n')
}

// AppendArrayHeader appends *n\r\n; the n elements follow.
func AppendArrayHeader(dst []byte, n int) []byte {
	return appendHeader(dst, '*', int64(n))
}

// AppendMapHeader appends a map of pairs key/value pairs: %pairs\r\n in
// RESP3, a flat array *2*pairs\r\n in RESP2 (as redis does).
func AppendMapHeader(dst []byte, pairs int, proto int) []byte {
	if proto == 3 {
		return appendHeader(dst, '%', int64(pairs))
	}
	return appendHeader(dst, '*', 2*int64(pairs))
}

// AppendSetHeader appends ~n\r\n in RESP3, *n\r\n in RESP2.
func AppendSetHeader(dst []byte, n int, proto int) []byte {
	if proto == 3 {
		return appendHeader(dst, '~', int64(n))
	}
	return appendHeader(dst, '*', int64(n))
}

// AppendPushHeader appends >n\r\n in RESP3, *n\r\n in RESP2 (how redis
// sends pub/sub messages to RESP2 clients).
func AppendPushHeader(dst []byte, n int, proto int) []byte {
	if proto == 3 {
		return appendHeader(dst, '>', int64(n))
	}
	return appendHeader(dst, '*', int64(n))
}

// AppendVerbatim appends s as a verbatim string =len\r\nfmt:s\r\n in RESP3
// and as a plain bulk string in RESP2. The format must be three bytes
// ("txt", "mkd"); any other value is replaced by "txt" so the frame stays
// well-formed.
func AppendVerbatim(dst []byte, format string, s string, proto int) []byte {
	if proto != 3 {
		return AppendBulkString(dst, s)
	}
	if len(format) != 3 {
		format = "txt"
	}
	dst = appendHeader(dst, '=', int64(len(s)+4))
	dst = append(dst, format...)
	dst = append(dst, ':')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendCommand appends a multibulk request *N\r\n$len\r\narg\r\n...
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = appendHeader(dst, '*', int64(len(args)))
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}

// AppendCommandStrings is AppendCommand for string arguments.
func AppendCommandStrings(dst []byte, args ...string) []byte {
	dst = appendHeader(dst, '*', int64(len(args)))
	for _, a := range args {
		dst = AppendBulkString(dst, a)
	}
	return dst
}

func appendHeader(dst []byte, typ byte, n int64) []byte {
	dst = append(dst, typ)
	if 0 <= n && n < 10 {
		dst = append(dst, byte('0'+n)) // the common case: skip strconv
	} else {
		dst = strconv.AppendInt(dst, n, 10)
	}
	return append(dst, '\r', '\n')
}
