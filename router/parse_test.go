package router

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/replproxy/replproxy/resp"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The recorded replies of redis 7.0.15 (make them again with
// go test -run TestLiveCommandTable -update).
func TestParseRecordedReplies(t *testing.T) {
	var parsed [][]CommandSpec
	for _, name := range []string{"command_resp2.resp", "command_resp3.resp"} {
		specs, err := ParseCommandReply(readTestdata(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(specs) != 240 {
			t.Fatalf("%s: %d specs, want 240", name, len(specs))
		}
		parsed = append(parsed, sortedSpecs(specs))
	}
	if !reflect.DeepEqual(parsed[0], parsed[1]) {
		t.Fatal("RESP2 and RESP3 parse differently")
	}
	if !reflect.DeepEqual(parsed[0], sortedSpecs(builtinSpecs)) {
		t.Fatal("the recorded reply and builtin_table.go differ: regenerate one of them")
	}
	byName := map[string]CommandSpec{}
	for _, s := range parsed[0] {
		byName[s.Name] = s
	}
	want := CommandSpec{Name: "mset", Arity: -3, Flags: []string{"write", "denyoom"}, FirstKey: 1, LastKey: -1, KeyStep: 2}
	if got := byName["mset"]; !reflect.DeepEqual(got, want) {
		t.Errorf("mset = %+v, want %+v", got, want)
	}
	cfg := byName["config"]
	if len(cfg.Subcommands) != 5 || cfg.Flags != nil && len(cfg.Flags) != 0 {
		t.Errorf("config = %+v", cfg)
	}
	for _, name := range []string{"command_info_resp2.resp", "command_info_resp3.resp"} {
		specs, err := ParseCommandReply(readTestdata(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var names []string
		for _, s := range specs {
			names = append(names, s.Name)
		}
		// COMMAND INFO get nosuchcommand config|get xread: the unknown
		// name's null entry is skipped.
		if strings.Join(names, " ") != "get config|get xread" {
			t.Errorf("%s: %q", name, names)
		}
	}
}

func TestParseCommandReply(t *testing.T) {
	entry := func(parts ...string) string { return strings.Join(parts, "") }
	get2 := entry("*6\r\n", "$3\r\nget\r\n", ":2\r\n", "*2\r\n+readonly\r\n+fast\r\n", ":1\r\n:1\r\n:1\r\n")
	get3 := entry("*10\r\n", "$3\r\nGET\r\n", ":2\r\n", "~2\r\n+readonly\r\n+fast\r\n", ":1\r\n:1\r\n:1\r\n",
		"~1\r\n+@read\r\n", "*0\r\n", "*1\r\n%1\r\n$5\r\nflags\r\n~1\r\n+RO\r\n", "*0\r\n")
	getSpec := CommandSpec{Name: "get", Arity: 2, Flags: []string{"readonly", "fast"}, FirstKey: 1, LastKey: 1, KeyStep: 1}
	cfg := entry("*10\r\n", "+config\r\n", ":-2\r\n", "*0\r\n", ":0\r\n:0\r\n:0\r\n", "*0\r\n*0\r\n*0\r\n",
		"*1\r\n", "*10\r\n", "$10\r\nconfig|get\r\n", ":-3\r\n", "*1\r\n+admin\r\n", ":0\r\n:0\r\n:0\r\n", "*0\r\n*0\r\n*0\r\n*0\r\n")
	cfgSpec := CommandSpec{Name: "config", Arity: -2, Subcommands: []CommandSpec{{Name: "config|get", Arity: -3, Flags: []string{"admin"}}}}

	ok := []struct {
		name  string
		reply string
		want  []CommandSpec
	}{
		{"resp2", "*1\r\n" + get2, []CommandSpec{getSpec}},
		{"resp3", "*1\r\n" + get3, []CommandSpec{getSpec}},
		{"subcommands", "*1\r\n" + cfg, []CommandSpec{cfgSpec}},
		{"empty", "*0\r\n", []CommandSpec{}},
		{"null entries", "*3\r\n$-1\r\n" + get2 + "_\r\n", []CommandSpec{getSpec}},
		{"null array entry", "*2\r\n*-1\r\n" + get2, []CommandSpec{getSpec}},
		{"verbatim name", "*1\r\n*6\r\n=7\r\ntxt:get\r\n:2\r\n*0\r\n:1\r\n:1\r\n:1\r\n", []CommandSpec{{Name: "get", Arity: 2, FirstKey: 1, LastKey: 1, KeyStep: 1}}},
		{"null flags", "*1\r\n*6\r\n+x\r\n:1\r\n_\r\n:0\r\n:0\r\n:0\r\n", []CommandSpec{{Name: "x", Arity: 1}}},
		{"attribute", "|1\r\n+a\r\n+b\r\n*1\r\n" + get2, []CommandSpec{getSpec}},
		{"push", ">1\r\n" + get2, []CommandSpec{getSpec}},
		{"set", "~1\r\n" + get2, []CommandSpec{getSpec}},
		{"unknown flag kept", "*1\r\n*6\r\n+x\r\n:1\r\n*1\r\n+shiny_new\r\n:0\r\n:0\r\n:0\r\n", []CommandSpec{{Name: "x", Arity: 1, Flags: []string{"shiny_new"}}}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCommandReply([]byte(tc.reply))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}

	bad := []struct {
		name  string
		reply string
		is    error // besides ErrCommandReply
	}{
		{"empty", "", nil},
		{"incomplete", "*1\r\n" + get2[:len(get2)-3], nil},
		{"trailing", "*0\r\n+OK\r\n", nil},
		{"error reply", "-ERR unknown command 'COMMAND'\r\n", nil},
		{"blob error", "!5\r\nERR x\r\n", nil},
		{"not an array", "+OK\r\n", nil},
		{"null reply", "*-1\r\n", nil},
		{"entry not an array", "*1\r\n+get\r\n", nil},
		{"short entry", "*1\r\n*5\r\n+get\r\n:2\r\n*0\r\n:1\r\n:1\r\n", nil},
		{"name not a string", "*1\r\n*6\r\n:1\r\n:2\r\n*0\r\n:1\r\n:1\r\n:1\r\n", nil},
		{"empty name", "*1\r\n*6\r\n$0\r\n\r\n:2\r\n*0\r\n:1\r\n:1\r\n:1\r\n", nil},
		{"arity not an int", "*1\r\n*6\r\n+get\r\n+2\r\n*0\r\n:1\r\n:1\r\n:1\r\n", nil},
		{"key not an int", "*1\r\n*6\r\n+get\r\n:2\r\n*0\r\n:1\r\n,1.5\r\n:1\r\n", nil},
		{"flags not an array", "*1\r\n*6\r\n+get\r\n:2\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n", nil},
		{"flag not a string", "*1\r\n*6\r\n+get\r\n:2\r\n*1\r\n:1\r\n:1\r\n:1\r\n:1\r\n", nil},
		{"bad subcommand", "*1\r\n*10\r\n+c\r\n:2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*1\r\n+x\r\n", nil},
		{"bad type byte", "?\r\n", resp.ErrReplyType},
		{"negative length", "*-2\r\n", nil},
		{"huge array", "*1000000000\r\n", nil},
		{"streamed", "*?\r\n", resp.ErrReplyStreamed},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			got, err := ParseCommandReply([]byte(tc.reply))
			if err == nil {
				t.Fatalf("no error, got %+v", got)
			}
			if !errors.Is(err, ErrCommandReply) {
				t.Fatalf("error %v does not wrap ErrCommandReply", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v does not wrap %v", err, tc.is)
			}
		})
	}
	if _, err := ParseCommandReply([]byte("-ERR unknown command 'COMMAND'\r\n")); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("an error reply's text must be in the error: %v", err)
	}
}

// NewTable accepts what COMMAND INFO config|get returns (a subcommand at top
// level) and names in any case.
func TestNewTableShapes(t *testing.T) {
	tab := NewTable([]CommandSpec{
		{Name: "GET", Arity: 2, Flags: []string{"READONLY", "fast"}, FirstKey: 1, LastKey: 1, KeyStep: 1},
		{Name: "config|get", Arity: -3, Flags: []string{"admin"}},
		{Name: "xinfo", Subcommands: []CommandSpec{{Name: "help", Flags: []string{"readonly"}}}},
	}, Options{})
	if got := tab.Classify(args("get", "k"), nil); got.Class != ClassRead || got.Name != "get" {
		t.Errorf("get: %+v", got)
	}
	if got := tab.Classify(args("CONFIG", "GET", "x"), nil); got.Class != ClassWrite || got.Name != "config|get" || got.Flags != FlagAdmin {
		t.Errorf("config get: %+v", got)
	}
	if got := tab.Classify(args("XINFO", "HELP"), nil); got.Class != ClassRead || got.Name != "xinfo|help" {
		t.Errorf("xinfo help: %+v", got)
	}
	// Rules hold even for commands the server did not list.
	if got := tab.Classify(args("SHUTDOWN"), nil); got.Class != ClassDenied {
		t.Errorf("shutdown: %+v", got)
	}
	if got := tab.Classify(args("PING"), nil); got.Class != ClassLocal || got.Local != LocalPing {
		t.Errorf("ping: %+v", got)
	}
	if got := tab.Classify(args("CLIENT", "ID"), nil); got.Local != LocalClientID {
		t.Errorf("client id: %+v", got)
	}
	if got := tab.Classify(args("XREAD", "STREAMS", "s", "0"), nil); got.Class != ClassWrite {
		t.Errorf("xread unknown to the server must not be a read: %+v", got)
	}
	if got := tab.Classify(args("HGET", "h", "f"), nil); got.Class != ClassWrite || got.Name != "" {
		t.Errorf("unlisted hget: %+v", got)
	}
	empty := NewTable(nil, Options{})
	if got := empty.Classify(args("GET", "k"), nil); got.Class != ClassWrite {
		t.Errorf("empty table get: %+v", got)
	}
}
