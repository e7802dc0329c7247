package router

import (
	"crypto/sha1"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fuzzSeeds are the checked-in seed inputs of each fuzz target
// (testdata/fuzz/<target>/), one per RESP type and per tricky shape.
// go test -run TestFuzzSeeds -update rewrites them.
var fuzzSeeds = map[string][]string{
	"FuzzParseCommandReply": {
		"*1\r\n*6\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n",
		"*1\r\n*10\r\n$3\r\nGET\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n~1\r\n+@read\r\n*0\r\n*1\r\n%1\r\n$5\r\nflags\r\n~1\r\n+RO\r\n*0\r\n",
		"*1\r\n*10\r\n+config\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*1\r\n*10\r\n$10\r\nconfig|get\r\n:-3\r\n*1\r\n+admin\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*0\r\n",
		"*3\r\n$-1\r\n*-1\r\n_\r\n",
		"*1\r\n*6\r\n=7\r\ntxt:get\r\n:2\r\n*0\r\n:1\r\n:1\r\n:1\r\n",
		"|1\r\n+a\r\n+b\r\n*0\r\n",
		">1\r\n*6\r\n+x\r\n:1\r\n_\r\n:0\r\n:0\r\n:0\r\n",
		"~1\r\n*6\r\n+x\r\n:1\r\n#t\r\n,1.5\r\n(1\r\n:0\r\n",
		"-ERR unknown command 'COMMAND'\r\n",
		"!5\r\nERR x\r\n",
		"*0\r\n+OK\r\n",
		"*1000000000\r\n",
		"*-2\r\n",
		"*?\r\n",
		"$-5\r\n",
		"*1\r\n*6\r\n$100\r\nget\r\n",
		"*1\r\n*10\r\n+c\r\n:2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*1\r\n*10\r\n+c|d\r\n:2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*1\r\n+x\r\n",
		"*1\r\n*6\r\n+x\r\n:99999999999999999999\r\n*0\r\n:0\r\n:0\r\n:0\r\n",
	},
	"FuzzClassify": {
		"GET\nk", "config\nget\nx", "CONFIG", "XREAD\nBLOCK\n0\nSTREAMS\ns\n$", "XREADGROUP\nGROUP\ng\nc\nBLOCK",
		"xread\nblock", "EVAL\n#!lua flags=no-writes\nreturn 1\n0", "EVAL\n#!lua \"flags=no-writes\\x00\"\nx",
		"EVAL\n#!lua 'flags=no-writes", "EVALSHA\n0123456789abcdef0123456789abcdef01234567\n0",
		"CLUSTER\nINFO", "", "\n", "client", "CLIENT\nTRACKING\nON", "MONITOR", "\x00", "GET\xff",
	},
	"FuzzScriptFlags": {
		"#!lua flags=no-writes\nreturn 1", "#!lua\nreturn 1", "return 1", "#!lua flags=no-writes",
		"#!lua \"flags=no-writes\\x00,zz\"\n", "#!lua 'flags=no-writes\\''\n", "#!lu\"a\"\n",
		"#!lua flags=no-writes,\n", "#!lua \vflags=no-writes\n", "#!lua\x00 flags=no-writes\n",
		"#!lua \"flags=no-writes\"x\n", "#!lua \"\\x4\"\n",
	},
}

func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds {
		dir := filepath.Join("testdata", "fuzz", target)
		for _, s := range seeds {
			var body string
			if target == "FuzzScriptFlags" {
				body = "go test fuzz v1\nstring(" + strconv.Quote(s) + ")\n"
			} else {
				body = "go test fuzz v1\n[]byte(" + strconv.Quote(s) + ")\n"
			}
			name := filepath.Join(dir, fmt.Sprintf("seed-%x", sha1.Sum([]byte(s)))[:5+16])
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(name)
			if err != nil || string(got) != body {
				t.Errorf("seed %s missing or stale (go test -run TestFuzzSeeds -update): %v", name, err)
			}
		}
	}
}
