package router

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// refSplitArgs is sdssplitargs (redis 7.0 sds.c) ported the obvious,
// allocating way; parseShebang must agree with it. ok=false where the C
// function returns NULL.
func refSplitArgs(line string) (parts []string, ok bool) {
	at := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	p := 0
	for {
		for at(p) != 0 && isSpace(at(p)) {
			p++
		}
		if at(p) == 0 {
			return parts, true
		}
		var cur []byte
		inq, insq, done := false, false, false
		for !done {
			c := at(p)
			if inq {
				if c == '\\' && at(p+1) == 'x' && isHexDigit(at(p+2)) && isHexDigit(at(p+3)) {
					cur = append(cur, unhexAny(at(p+2))*16+unhexAny(at(p+3)))
					p += 3
				} else if c == '\\' && at(p+1) != 0 {
					p++
					e := at(p)
					switch e {
					case 'n':
						e = '\n'
					case 'r':
						e = '\r'
					case 't':
						e = '\t'
					case 'b':
						e = '\b'
					case 'a':
						e = '\a'
					}
					cur = append(cur, e)
				} else if c == '"' {
					if at(p+1) != 0 && !isSpace(at(p+1)) {
						return nil, false
					}
					done = true
				} else if c == 0 {
					return nil, false
				} else {
					cur = append(cur, c)
				}
			} else if insq {
				if c == '\\' && at(p+1) == '\'' {
					p++
					cur = append(cur, '\'')
				} else if c == '\'' {
					if at(p+1) != 0 && !isSpace(at(p+1)) {
						return nil, false
					}
					done = true
				} else if c == 0 {
					return nil, false
				} else {
					cur = append(cur, c)
				}
			} else {
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					cur = append(cur, c)
				}
			}
			if at(p) != 0 {
				p++
			}
		}
		parts = append(parts, string(cur))
	}
}

// cstr is what strcmp sees of an sds: the bytes before the first NUL.
func cstr(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// refShebang is evalExtractShebangFlags (redis 7.0 eval.c) over
// refSplitArgs.
func refShebang(body string) (flags uint8, shebang, valid bool) {
	if !strings.HasPrefix(cstr(body), "#!") {
		return 0, false, true
	}
	end := strings.IndexByte(cstr(body), '\n')
	if end < 0 {
		return 0, true, false
	}
	parts, ok := refSplitArgs(body[:end])
	if !ok || len(parts) == 0 || cstr(parts[0]) != "#!lua" {
		return 0, true, false
	}
	for _, p := range parts[1:] {
		if !strings.HasPrefix(cstr(p), "flags=") {
			return 0, true, false
		}
		rest := p[6:]
		if rest == "" {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			found := false
			for k, name := range scriptFlagNames {
				if cstr(f) == name {
					flags |= 1 << k
					found = true
					break
				}
			}
			if !found {
				return 0, true, false
			}
		}
	}
	return flags, true, true
}

func TestParseShebangMatchesReference(t *testing.T) {
	lines := shebangCases()
	lines = append(lines, "", "#", "#!lua\n", "\n#!lua flags=no-writes")
	for _, line := range lines {
		for _, body := range []string{line, line + "\nreturn 1", line + "\r\nreturn 1"} {
			gf, gs, gv := parseShebang([]byte(body))
			rf, rs, rv := refShebang(body)
			if gf != rf || gs != rs || gv != rv {
				t.Errorf("parseShebang(%q) = %v %v %v, reference %v %v %v", body, gf, gs, gv, rf, rs, rv)
			}
		}
	}
}

func FuzzScriptFlags(f *testing.F) {
	for _, l := range shebangCases() {
		f.Add(l + "\nreturn 1")
	}
	f.Fuzz(func(t *testing.T, body string) {
		gf, gs, gv := parseShebang([]byte(body))
		rf, rs, rv := refShebang(body)
		if gf != rf || gs != rs || gv != rv {
			t.Fatalf("parseShebang(%q) = %v %v %v, reference %v %v %v", body, gf, gs, gv, rf, rs, rv)
		}
	})
}

func TestScriptReadOnlyAllocs(t *testing.T) {
	body := []byte(`#!lua "flags=allow-oom,no-writes" flags=allow-stale` + "\nreturn 1")
	if !ScriptReadOnly(body) {
		t.Fatal("not read-only")
	}
	if n := testing.AllocsPerRun(100, func() { ScriptReadOnly(body) }); n != 0 {
		t.Fatalf("ScriptReadOnly allocates %v times", n)
	}
}

func TestScriptCache(t *testing.T) {
	c := NewScriptCache(0)
	body := []byte(roScript)
	sha := c.Add(body)
	sum := sha1.Sum(body)
	if want := hex.EncodeToString(sum[:]); sha != want {
		t.Fatalf("Add = %q, want %q", sha, want)
	}
	body[0] = 'X' // Add copied it
	got, ro, ok := c.Lookup([]byte(sha))
	if !ok || !ro || string(got) != roScript {
		t.Fatalf("Lookup = %q %v %v", got, ro, ok)
	}
	if _, _, ok := c.Lookup([]byte(strings.ToUpper(sha))); !ok {
		t.Fatal("Lookup is case-sensitive")
	}
	if again := c.Add([]byte(roScript)); again != sha || c.Len() != 1 {
		t.Fatalf("re-Add = %q, Len %d", again, c.Len())
	}
	rw := c.Add([]byte(plainScript))
	if _, ro, ok := c.Lookup([]byte(rw)); !ok || ro {
		t.Fatalf("plain script: ro=%v ok=%v", ro, ok)
	}
	for _, bad := range []string{"", "abc", sha[:39], sha + "0", strings.Repeat("z", 40), strings.Repeat("0", 40)} {
		if _, _, ok := c.Lookup([]byte(bad)); ok {
			t.Errorf("Lookup(%q) found something", bad)
		}
	}
	var nilCache *ScriptCache
	if _, _, ok := nilCache.Lookup([]byte(sha)); ok {
		t.Error("nil cache found something")
	}
	empty := c.Add(nil)
	if b, _, ok := c.Lookup([]byte(empty)); !ok || b == nil || len(b) != 0 {
		t.Errorf("empty script: %q %v", b, ok)
	}
	if empty != "da39a3ee5e6b4b0d3255bfef95601890afd80709" {
		t.Errorf("SHA1 of the empty script = %s", empty)
	}
}

func TestScriptCacheEvictsOldest(t *testing.T) {
	const max = 100
	c := NewScriptCache(max)
	var shas []string
	for i := 0; i < 3*max+7; i++ {
		shas = append(shas, c.Add([]byte(fmt.Sprintf("return %d", i))))
		if c.Len() > max {
			t.Fatalf("after %d adds Len() = %d > %d", i+1, c.Len(), max)
		}
	}
	if c.Len() != max {
		t.Fatalf("Len() = %d, want %d", c.Len(), max)
	}
	for i, sha := range shas {
		_, _, ok := c.Lookup([]byte(sha))
		if want := i >= len(shas)-max; ok != want {
			t.Fatalf("script %d of %d: present=%v, want %v", i, len(shas), ok, want)
		}
	}
	// Re-adding a present script does not refresh it (FIFO).
	c.Add([]byte(fmt.Sprintf("return %d", len(shas)-max)))
	c.Add([]byte("new"))
	if _, _, ok := c.Lookup([]byte(shas[len(shas)-max])); ok {
		t.Fatal("oldest script survived")
	}
}

func TestScriptCacheConcurrent(t *testing.T) {
	c := NewScriptCache(500)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sha := []byte(NewScriptCache(1).Add([]byte(roScript)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if body, ro, ok := c.Lookup(sha); ok && (!ro || string(body) != roScript) {
					t.Error("torn entry")
					return
				}
			}
		}()
	}
	var adders sync.WaitGroup
	for w := 0; w < 4; w++ {
		adders.Add(1)
		go func(w int) {
			defer adders.Done()
			for i := 0; i < 2000; i++ {
				c.Add([]byte(fmt.Sprintf("return %d", i%700)))
				if i%50 == w {
					c.Add([]byte(roScript))
				}
			}
		}(w)
	}
	adders.Wait()
	close(stop)
	wg.Wait()
	if c.Len() > 500 {
		t.Fatalf("Len() = %d > 500", c.Len())
	}
}

func TestScriptCacheLookupAllocs(t *testing.T) {
	c := NewScriptCache(0)
	sha := []byte(strings.ToUpper(c.Add([]byte(roScript))))
	if n := testing.AllocsPerRun(100, func() { c.Lookup(sha) }); n != 0 {
		t.Fatalf("Lookup allocates %v times", n)
	}
	body := []byte(roScript)
	if n := testing.AllocsPerRun(100, func() { c.Add(body) }); n != 0 {
		t.Fatalf("Add of a known script allocates %v times", n)
	}
}

func TestScriptCacheByteBudget(t *testing.T) {
	c := NewScriptCacheLimits(1000, 16*1024)
	big := make([]byte, 16*1024/16+1)
	if sha := c.Add(big); len(sha) != 40 || c.Len() != 0 {
		t.Fatalf("a body over 1/16 of the budget was kept (sha %q, Len %d)", sha, c.Len())
	}
	var shas []string
	for i := 0; i < 100; i++ {
		body := make([]byte, 1000)
		copy(body, fmt.Sprintf("return %d --", i))
		shas = append(shas, c.Add(body))
		if c.bytes > 16*1024 {
			t.Fatalf("after %d adds %d bytes kept", i+1, c.bytes)
		}
	}
	if c.Len() != 16 {
		t.Fatalf("Len() = %d, want 16 bodies of 1000 bytes in 16 KiB", c.Len())
	}
	for i, sha := range shas {
		if _, _, ok := c.Lookup([]byte(sha)); ok != (i >= len(shas)-16) {
			t.Fatalf("script %d: present=%v", i, ok)
		}
	}
}
