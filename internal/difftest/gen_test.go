package difftest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// argSpec is one argument of COMMAND DOCS.
type argSpec struct {
	name, typ, token string
	optional, multi  bool
	value            string // "value" of a pure-token/oneof is its token
	children         []argSpec
}

// cmdDoc is one command or subcommand of COMMAND DOCS.
type cmdDoc struct {
	name  []string // "config", "get"
	group string
	args  []argSpec
}

func (d cmdDoc) full() string { return strings.Join(d.name, "|") }

// loadDocs reads COMMAND DOCS from addr (RESP3, as maps).
func loadDocs(t *testing.T, addr string) []cmdDoc {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3})
	defer c.Close()
	v, err := c.Do(context.Background(), "COMMAND", "DOCS").Result()
	if err != nil {
		t.Fatalf("COMMAND DOCS: %v", err)
	}
	m, ok := v.(map[interface{}]interface{})
	if !ok {
		t.Fatalf("COMMAND DOCS: %T", v)
	}
	var out []cmdDoc
	var walk func(prefix []string, name string, doc map[interface{}]interface{})
	walk = func(prefix []string, name string, doc map[interface{}]interface{}) {
		parts := strings.Split(strings.ToLower(name), "|")
		d := cmdDoc{name: append(append([]string(nil), prefix...), parts[len(parts)-1]), group: str(doc["group"])}
		if len(prefix) == 0 {
			d.name = parts
		}
		if as, ok := doc["arguments"].([]interface{}); ok {
			d.args = parseArgs(as)
		}
		if subs, ok := doc["subcommands"].(map[interface{}]interface{}); ok && len(subs) > 0 {
			for sn, sd := range subs {
				walk(d.name, str(sn), sd.(map[interface{}]interface{}))
			}
			return
		}
		out = append(out, d)
	}
	for n, d := range m {
		walk(nil, str(n), d.(map[interface{}]interface{}))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].full() < out[j].full() })
	return out
}

func str(v interface{}) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func parseArgs(as []interface{}) []argSpec {
	var out []argSpec
	for _, a := range as {
		m, ok := a.(map[interface{}]interface{})
		if !ok {
			continue
		}
		s := argSpec{name: str(m["name"]), typ: str(m["type"]), token: str(m["token"]), value: str(m["value"])}
		if fl, ok := m["flags"].([]interface{}); ok {
			for _, f := range fl {
				switch str(f) {
				case "optional":
					s.optional = true
				case "multiple":
					s.multi = true
				}
			}
		}
		if ch, ok := m["arguments"].([]interface{}); ok {
			s.children = parseArgs(ch)
		}
		out = append(out, s)
	}
	return out
}

// fixture keys, one per type, and what commands get for a key argument.
var fixtureKeys = []string{"kstr", "klist", "khash", "kset", "kzset", "kstream", "kmissing"}

func fixture() [][]string {
	return [][]string{
		{"DEL", "kstr", "klist", "khash", "kset", "kzset", "kstream", "kmissing", "kdst", "kgeo"},
		{"SET", "kstr", "12"},
		{"RPUSH", "klist", "a", "b", "c"},
		{"HSET", "khash", "f", "1", "g", "v"},
		{"SADD", "kset", "a", "b"},
		{"ZADD", "kzset", "1", "a", "2", "b"},
		{"XADD", "kstream", "1-1", "f", "v"},
		{"GEOADD", "kgeo", "13.361389", "38.115556", "Palermo"},
	}
}

// argValues gives an argument list for args: full includes optional
// arguments, key is the key to use, bad replaces numbers by garbage.
func argValues(args []argSpec, full bool, key string, bad bool) []string {
	var out []string
	for _, a := range args {
		if a.optional && !full {
			continue
		}
		out = append(out, argValue(a, full, key, bad)...)
	}
	return out
}

func argValue(a argSpec, full bool, key string, bad bool) []string {
	var v []string
	if a.token != "" {
		v = append(v, a.token)
	}
	switch a.typ {
	case "pure-token":
		return v
	case "oneof":
		if len(a.children) > 0 {
			v = append(v, argValue(a.children[0], full, key, bad)...)
		}
		return v
	case "block":
		return append(v, argValues(a.children, full, key, bad)...)
	case "key":
		return append(v, key)
	case "integer":
		switch {
		case bad:
			return append(v, "notanumber")
		case a.name == "timeout" || a.name == "milliseconds" && a.token == "BLOCK":
			return append(v, "1")
		case a.name == "numkeys":
			return append(v, "1")
		case a.name == "cursor":
			return append(v, "0") // another cursor names a slot of one process's table
		case a.name == "db" || a.name == "index" && a.token == "":
			return append(v, "0")
		}
		return append(v, "1")
	case "double":
		if bad {
			return append(v, "x")
		}
		if a.name == "timeout" {
			return append(v, "0.01")
		}
		return append(v, "1.5")
	case "unix-time":
		return append(v, "2000000000")
	case "pattern":
		return append(v, "k*")
	}
	switch a.name {
	case "id", "start", "end", "min_id":
		return append(v, "1-1")
	case "group", "groupname":
		return append(v, "g")
	case "consumer", "consumername":
		return append(v, "c")
	case "field":
		return append(v, "f")
	case "member":
		return append(v, "a")
	}
	return append(v, "v")
}
