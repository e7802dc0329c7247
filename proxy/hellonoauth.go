package proxy

import (
	"strconv"
	"strings"
)

// helloNoAuth is HELLO's refusal of an unauthenticated client in the words
// of the master's version: Redis 7.0 (7.0.15 seen) writes "HELLO AUTH
// <user> <pass>", 7.2 and later "HELLO <proto> AUTH <user> <pass>". Client
// libraries surface the text verbatim (node-redis 5 fails connect with
// it), so the one of the master a client would otherwise talk to is the
// transparent one. An unparsable version gets the newer text.
func helloNoAuth(serverVersion string) string {
	major, rest, _ := strings.Cut(serverVersion, ".")
	minor, _, _ := strings.Cut(rest, ".")
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 == nil && err2 == nil && (ma < 7 || ma == 7 && mi < 2) {
		return errHelloNoAuth70
	}
	return errHelloNoAuth
}
