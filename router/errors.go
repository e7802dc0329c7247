package router

import "errors"

// ErrCommandReply is wrapped by every error ParseCommandReply returns: the
// bytes are not a COMMAND / COMMAND INFO reply (malformed RESP, a reply of
// the wrong shape, or the server's error reply, whose text is included).
var ErrCommandReply = errors.New("router: bad COMMAND reply")

// DeniedMessage returns the error text (without the leading '-') the proxy
// sends for a ClassDenied command; name is Info.Name ("shutdown",
// "config|set"), which is also what --allow-command takes.
func DeniedMessage(name string) string {
	return "ERR replproxy: '" + name + "' is not allowed through the proxy (allow it with --allow-command " + name + ")"
}
