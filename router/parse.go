package router

import (
	"fmt"
	"strings"

	"github.com/replproxy/replproxy/resp"
)

// CommandSpec is one entry of a COMMAND or COMMAND INFO reply, the part of
// it the router uses. Container commands (CONFIG, CLIENT, SCRIPT, ACL,
// OBJECT, XINFO, MEMORY, FUNCTION...) list their subcommands, named
// "container|sub".
type CommandSpec struct {
	Name                       string // lowercase; subcommands as "config|get"
	Arity                      int    // negative: at least -Arity arguments
	Flags                      []string
	FirstKey, LastKey, KeyStep int
	Subcommands                []CommandSpec
}

// maxSpecDepth bounds subcommand nesting; Redis has one level.
const maxSpecDepth = 4

// ParseCommandReply turns the raw bytes of one reply to COMMAND or COMMAND
// INFO ... (RESP2 or RESP3, as read off the wire) into specs. Entries COMMAND
// INFO returns as null (unknown names) are skipped; fields after the sixth
// (ACL categories, tips, key specs) are ignored except the subcommands. The
// reply must be exactly one complete reply. Errors wrap ErrCommandReply.
func ParseCommandReply(reply []byte) ([]CommandSpec, error) {
	sc := resp.NewReplyScanner(resp.Limits{})
	n, err := sc.Scan(reply)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrCommandReply, err)
	case n == 0:
		return nil, fmt.Errorf("%w: incomplete reply (%d bytes)", ErrCommandReply, len(reply))
	case n != len(reply):
		return nil, fmt.Errorf("%w: %d bytes after the reply", ErrCommandReply, len(reply)-n)
	}
	d := decoder{b: reply}
	v, err := d.value(0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCommandReply, err)
	}
	if v.kind == kindError {
		return nil, fmt.Errorf("%w: server replied %q", ErrCommandReply, v.str)
	}
	if v.kind != kindArray {
		return nil, fmt.Errorf("%w: expected an array, got %s", ErrCommandReply, v.kind)
	}
	return specsFrom(v.arr, 0)
}

func specsFrom(vs []value, depth int) ([]CommandSpec, error) {
	if depth > maxSpecDepth {
		return nil, fmt.Errorf("%w: subcommands nested too deep", ErrCommandReply)
	}
	specs := make([]CommandSpec, 0, len(vs))
	for i, v := range vs {
		if v.kind == kindNull {
			continue // COMMAND INFO of an unknown name
		}
		s, err := specFrom(v, depth)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		specs = append(specs, s)
	}
	return specs, nil
}

func specFrom(v value, depth int) (CommandSpec, error) {
	var s CommandSpec
	if v.kind != kindArray || len(v.arr) < 6 {
		return s, fmt.Errorf("%w: a command entry must be an array of at least 6, got %s of %d", ErrCommandReply, v.kind, len(v.arr))
	}
	f := v.arr
	name, ok := f[0].text()
	if !ok || name == "" {
		return s, fmt.Errorf("%w: command name is %s", ErrCommandReply, f[0].kind)
	}
	s.Name = strings.ToLower(name)
	ints := []*int{&s.Arity, nil, &s.FirstKey, &s.LastKey, &s.KeyStep}
	for i, p := range ints {
		if p == nil {
			continue
		}
		if f[1+i].kind != kindInt {
			return s, fmt.Errorf("%w: %s: field %d is %s, want an integer", ErrCommandReply, s.Name, 1+i, f[1+i].kind)
		}
		*p = int(f[1+i].n)
	}
	if fl := f[2]; fl.kind == kindArray {
		for _, x := range fl.arr {
			t, ok := x.text()
			if !ok {
				return s, fmt.Errorf("%w: %s: flag is %s", ErrCommandReply, s.Name, x.kind)
			}
			s.Flags = append(s.Flags, strings.ToLower(t))
		}
	} else if fl.kind != kindNull {
		return s, fmt.Errorf("%w: %s: flags are %s", ErrCommandReply, s.Name, fl.kind)
	}
	if len(f) > 9 && f[9].kind == kindArray && len(f[9].arr) > 0 {
		subs, err := specsFrom(f[9].arr, depth+1)
		if err != nil {
			return s, fmt.Errorf("%s: %w", s.Name, err)
		}
		s.Subcommands = subs
	}
	return s, nil
}

type kind uint8

const (
	kindNull kind = iota
	kindString
	kindError
	kindInt
	kindArray // arrays, sets, pushes and maps (flattened)
	kindOther // doubles, booleans, big numbers
)

func (k kind) String() string {
	return [...]string{"null", "string", "error", "integer", "array", "other"}[k]
}

type value struct {
	kind kind
	str  []byte
	n    int64
	arr  []value
}

// text returns a string-like value (simple, bulk or verbatim string).
func (v value) text() (string, bool) {
	return string(v.str), v.kind == kindString
}

// decoder builds values from a reply resp.ReplyScanner has already found
// complete and well-formed, so it trusts the framing; it still checks every
// length against the bytes it has, so it cannot panic on any input.
type decoder struct {
	b   []byte
	pos int
}

func (d *decoder) line() ([]byte, error) {
	for i := d.pos; i+1 < len(d.b); i++ {
		if d.b[i] == '\r' && d.b[i+1] == '\n' {
			l := d.b[d.pos:i]
			d.pos = i + 2
			return l, nil
		}
	}
	return nil, fmt.Errorf("unterminated line at byte %d", d.pos)
}

func (d *decoder) value(depth int) (value, error) {
	if depth > 64 {
		return value{}, fmt.Errorf("reply nested too deep")
	}
	if d.pos >= len(d.b) {
		return value{}, fmt.Errorf("reply truncated at byte %d", d.pos)
	}
	t := d.b[d.pos]
	d.pos++
	l, err := d.line()
	if err != nil {
		return value{}, err
	}
	switch t {
	case '+':
		return value{kind: kindString, str: l}, nil
	case '-':
		return value{kind: kindError, str: l}, nil
	case ':':
		n, ok := resp.ParseInt(l)
		if !ok {
			return value{}, fmt.Errorf("bad integer %q", l)
		}
		return value{kind: kindInt, n: n}, nil
	case '_':
		return value{kind: kindNull}, nil
	case '#', ',', '(':
		return value{kind: kindOther, str: l}, nil
	case '$', '=', '!':
		n, ok := resp.ParseInt(l)
		if !ok {
			return value{}, fmt.Errorf("bad length %q", l)
		}
		if n < 0 {
			return value{kind: kindNull}, nil
		}
		if n > int64(len(d.b)-d.pos-2) {
			return value{}, fmt.Errorf("string of %d bytes past the end", n)
		}
		s := d.b[d.pos : d.pos+int(n)]
		d.pos += int(n) + 2
		switch t {
		case '!':
			return value{kind: kindError, str: s}, nil
		case '=':
			if len(s) >= 4 && s[3] == ':' {
				s = s[4:] // "txt:" format prefix
			}
		}
		return value{kind: kindString, str: s}, nil
	case '*', '~', '>', '%', '|':
		n, ok := resp.ParseInt(l)
		if !ok {
			return value{}, fmt.Errorf("bad length %q", l)
		}
		if n < 0 {
			return value{kind: kindNull}, nil
		}
		if t == '%' || t == '|' {
			n *= 2
		}
		// Every element takes at least 3 bytes: never trust n further.
		if n > int64(len(d.b)-d.pos)/3 {
			return value{}, fmt.Errorf("aggregate of %d past the end", n)
		}
		arr := make([]value, 0, n)
		for i := int64(0); i < n; i++ {
			e, err := d.value(depth + 1)
			if err != nil {
				return value{}, err
			}
			arr = append(arr, e)
		}
		if t == '|' {
			// An attribute annotates the value after it; keep that value.
			return d.value(depth + 1)
		}
		return value{kind: kindArray, arr: arr}, nil
	}
	return value{}, fmt.Errorf("unknown type byte %q", t)
}
