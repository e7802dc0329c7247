package router

import (
	"bytes"
	"testing"
)

func FuzzParseCommandReply(f *testing.F) {
	// The recorded replies are seeds too, so the fuzzer starts from the
	// real shapes (testdata/fuzz holds small hand-made ones).
	for _, name := range []string{"command_info_resp2.resp", "command_info_resp3.resp"} {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		specs, err := ParseCommandReply(reply)
		if err != nil {
			return
		}
		// Whatever parses must build a table that classifies its own names.
		tab := NewTable(specs, Options{})
		for _, s := range specs {
			tab.Classify([][]byte{[]byte(s.Name), []byte("x")}, nil)
		}
	})
}

var fuzzTable = BuiltinTable(Options{Allow: []string{"monitor"}})

func FuzzClassify(f *testing.F) {
	// args are the input split at '\n'.
	for _, s := range []string{
		"GET\nk", "config\nget\nx", "XREAD\nBLOCK\n0\nSTREAMS\ns\n$", "XREADGROUP\nGROUP\ng\nc\nBLOCK",
		"EVAL\n#!lua flags=no-writes", "EVALSHA\n" + "0123456789abcdef0123456789abcdef01234567",
		"CLUSTER\nINFO", "", "\n", "client", "CLIENT\nTRACKING\nON",
	} {
		f.Add([]byte(s))
	}
	scripts := NewScriptCache(16)
	scripts.Add([]byte(roScript))
	f.Fuzz(func(t *testing.T, in []byte) {
		a := bytes.Split(in, []byte("\n"))
		info := fuzzTable.Classify(a, scripts)
		if info.Class > ClassDenied {
			t.Fatalf("class %d", info.Class)
		}
		if info.Class == ClassDenied && DeniedMessage(info.Name) == "" {
			t.Fatal("no message")
		}
		// Scripts in the input may be added: Add must not panic either.
		if len(a) > 1 {
			scripts.Add(a[1])
		}
	})
}
