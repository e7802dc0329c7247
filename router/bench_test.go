package router

import (
	"strings"
	"testing"
)

// Classify is on every request's path: it must not allocate.
func TestClassifyAllocs(t *testing.T) {
	tab := BuiltinTable(Options{})
	scripts := NewScriptCache(0)
	sha := scripts.Add([]byte(roScript))
	for _, req := range [][]string{
		{"GET", "k"},
		{"set", "k", "v"},
		{"CONFIG", "GET", "maxmemory"},
		{"XREAD", "COUNT", "10", "BLOCK", "0", "STREAMS", "s", "$"},
		{"EVALSHA", strings.ToUpper(sha), "1", "k"},
		{"EVAL", roScript, "1", "k"},
		{"CLIENT", "NOSUCH"},
		{"NOSUCHCOMMAND", "x"},
		{"SHUTDOWN"},
	} {
		a := args(req...)
		want := tab.Classify(a, scripts)
		n := testing.AllocsPerRun(1000, func() {
			if got := tab.Classify(a, scripts); got != want {
				t.Fatal("unstable")
			}
		})
		if n != 0 {
			t.Errorf("Classify(%q) allocates %v times", req, n)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	tab := BuiltinTable(Options{})
	scripts := NewScriptCache(0)
	sha := scripts.Add([]byte(roScript))
	for _, bc := range []struct {
		name string
		req  []string
	}{
		{"GET", []string{"GET", "key:000000012345"}},
		{"set", []string{"set", "key:000000012345", "xxx"}},
		{"ZRANGEBYSCORE", []string{"ZRANGEBYSCORE", "z", "0", "10"}},
		{"CONFIG_GET", []string{"CONFIG", "GET", "maxmemory"}},
		{"XREAD_BLOCK", []string{"XREAD", "COUNT", "10", "BLOCK", "0", "STREAMS", "s", "$"}},
		{"EVALSHA", []string{"EVALSHA", sha, "1", "k"}},
		{"EVAL_shebang", []string{"EVAL", roScript, "1", "k"}},
		{"unknown", []string{"NOSUCHCOMMAND", "x"}},
	} {
		a := args(bc.req...)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tab.Classify(a, scripts)
			}
		})
	}
}

func BenchmarkClassifyParallel(b *testing.B) {
	tab := BuiltinTable(Options{})
	scripts := NewScriptCache(0)
	sha := scripts.Add([]byte(roScript))
	reqs := [][][]byte{args("GET", "k"), args("SET", "k", "v"), args("EVALSHA", sha, "0"), args("HGETALL", "h")}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tab.Classify(reqs[i&3], scripts)
			i++
		}
	})
}

func BenchmarkScriptCacheAdd(b *testing.B) {
	c := NewScriptCache(0)
	body := []byte(roScript)
	b.ReportAllocs()
	for b.Loop() {
		c.Add(body)
	}
}

func BenchmarkNewTable(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		BuiltinTable(Options{})
	}
}
