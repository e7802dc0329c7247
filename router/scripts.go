package router

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"sync"
	"sync/atomic"
)

// DefaultScriptCacheSize is the number of script bodies a ScriptCache keeps
// when NewScriptCache is given max <= 0.
const DefaultScriptCacheSize = 10000

// DefaultScriptCacheBytes bounds the bytes of the bodies a ScriptCache keeps
// when NewScriptCacheLimits is given maxBytes <= 0 (and always for
// NewScriptCache): bodies come from clients, and 10,000 of them could be
// arbitrarily large. A body over 1/16 of the budget is not kept at all.
const DefaultScriptCacheBytes = 64 << 20

// scriptShards is the number of independently copied maps. Adding a script
// copies one shard (about max/scriptShards entries) instead of the whole
// cache; 64 keeps that copy around 150 entries at the default size.
const scriptShards = 64

// ScriptCache maps a script's SHA1 to its body and whether the body declares
// itself read-only, so that EVALSHA of a read-only script can be routed like
// EVAL_RO, and so the proxy can resend the body (EVAL instead of EVALSHA) to
// a replica that never saw it: Redis 7 does not replicate SCRIPT LOAD.
//
// A body never goes stale: its SHA1 is a hash of its content, so SCRIPT
// FLUSH on the server does not invalidate what the cache says about it.
//
// Safe for concurrent use. Lookup is on every event loop's hot path and
// never takes a lock: each shard is an immutable map published through an
// atomic.Pointer and replaced (copy on write) by Add, which is rare (once per
// distinct script) and serialised by a mutex that Lookup never touches. A
// sharded RWMutex would also work, but readers would still write the shared
// lock word, and cache-line traffic across loops is what we avoid.
//
// The cache holds at most max scripts and maxBytes of bodies; adding one
// more evicts the oldest added (FIFO, not LRU: tracking use would make
// Lookup write). A script that is not (or no longer) cached is merely one
// whose EVALSHA stays on the master.
type ScriptCache struct {
	shards [scriptShards]atomic.Pointer[map[string]scriptEntry]

	mu       sync.Mutex // serialises Add; Lookup does not take it
	max      int
	maxBytes int64
	bytes    int64    // sum of the kept bodies' lengths
	order    []string // SHAs in insertion order from order[head] on
	head     int
}

type scriptEntry struct {
	sha      string
	body     []byte
	readOnly bool
}

// NewScriptCache returns an empty cache holding at most max scripts
// (DefaultScriptCacheSize when max <= 0) and DefaultScriptCacheBytes of
// bodies.
func NewScriptCache(max int) *ScriptCache {
	return NewScriptCacheLimits(max, 0)
}

// NewScriptCacheLimits is NewScriptCache with a byte budget for the bodies
// (DefaultScriptCacheBytes when maxBytes <= 0).
func NewScriptCacheLimits(max int, maxBytes int64) *ScriptCache {
	if max <= 0 {
		max = DefaultScriptCacheSize
	}
	if maxBytes <= 0 {
		maxBytes = DefaultScriptCacheBytes
	}
	c := &ScriptCache{max: max, maxBytes: maxBytes}
	for i := range c.shards {
		m := map[string]scriptEntry{}
		c.shards[i].Store(&m)
	}
	return c
}

// Add records body (which it copies) and returns its SHA1 as Redis computes
// it: 40 lowercase hex digits of the whole body, shebang line included.
// Adding a known body allocates nothing and changes nothing. A body larger
// than 1/16 of the byte budget is not recorded.
func (c *ScriptCache) Add(body []byte) (sha string) {
	sum := sha1.Sum(body)
	var key [40]byte
	hex.Encode(key[:], sum[:])
	shard := &c.shards[shardOf(key[:])]
	if e, ok := (*shard.Load())[string(key[:])]; ok {
		return e.sha
	}

	if int64(len(body)) > c.maxBytes/16 {
		return string(key[:])
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := (*shard.Load())[string(key[:])]; ok {
		return e.sha // added by another goroutine meanwhile
	}
	e := scriptEntry{sha: string(key[:]), body: bytes.Clone(body), readOnly: ScriptReadOnly(body)}
	if e.body == nil {
		e.body = []byte{}
	}
	for len(c.order)-c.head >= c.max || c.bytes+int64(len(body)) > c.maxBytes {
		c.remove(c.order[c.head])
		c.order[c.head] = ""
		c.head++
	}
	if c.head > len(c.order)/2 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
	c.order = append(c.order, e.sha)
	c.bytes += int64(len(e.body))
	c.insert(shard, e)
	return e.sha
}

// insert and remove copy one shard; the caller holds c.mu.
func (c *ScriptCache) insert(shard *atomic.Pointer[map[string]scriptEntry], e scriptEntry) {
	old := *shard.Load()
	m := make(map[string]scriptEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[e.sha] = e
	shard.Store(&m)
}

func (c *ScriptCache) remove(sha string) {
	shard := &c.shards[shardOf([]byte(sha))]
	old := *shard.Load()
	m := make(map[string]scriptEntry, len(old))
	for k, v := range old {
		if k != sha {
			m[k] = v
		} else {
			c.bytes -= int64(len(v.body))
		}
	}
	shard.Store(&m)
}

// Lookup finds a script by SHA1 (hex, any case, as EVALSHA accepts it). The
// returned body is the cache's own copy: do not modify it. It allocates
// nothing; a nil cache finds nothing.
func (c *ScriptCache) Lookup(sha []byte) (body []byte, readOnly bool, ok bool) {
	if c == nil || len(sha) != 40 {
		return nil, false, false
	}
	var key [40]byte
	for i, b := range sha {
		key[i] = lower(b)
	}
	e, ok := (*c.shards[shardOf(key[:])].Load())[string(key[:])]
	return e.body, e.readOnly, ok
}

// Len returns the number of scripts held.
func (c *ScriptCache) Len() int {
	n := 0
	for i := range c.shards {
		n += len(*c.shards[i].Load())
	}
	return n
}

// shardOf spreads SHAs by their first two hex digits, which are uniform.
func shardOf(sha []byte) int {
	return int(unhex(sha[0])<<4|unhex(sha[1])) % scriptShards
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 0
}

// Script flags a shebang line may declare, as in redis 7.0 script.c
// scripts_flags_def.
const (
	scriptFlagNoWrites uint8 = 1 << iota
	scriptFlagAllowOOM
	scriptFlagAllowStale
	scriptFlagNoCluster
	scriptFlagAllowCrossSlot
)

var scriptFlagNames = [...]string{"no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"}

// ScriptReadOnly reports whether Redis 7 runs body (an EVAL script) as a
// read-only script: it starts with a valid "#!lua" shebang line whose flags
// include no-writes. A script without a shebang runs in compatibility mode,
// where it may write; a malformed shebang makes Redis refuse the script, so
// neither is read-only. It allocates nothing.
func ScriptReadOnly(body []byte) bool {
	flags, shebang, valid := parseShebang(body)
	return valid && shebang && flags&scriptFlagNoWrites != 0
}

// parseShebang mirrors evalExtractShebangFlags (redis 7.0 src/eval.c)
// without allocating: shebang reports a "#!" first line, valid whether
// Redis would accept it, flags the script flags it declares.
//
// Redis splits the line with sdssplitargs (quotes and escapes allowed) and
// compares the pieces with strcmp, so a piece is compared only up to its
// first NUL byte (which only a "\x00" escape can produce). The pieces are
// streamed through shebangMatcher byte by byte instead of being built.
func parseShebang(body []byte) (flags uint8, shebang, valid bool) {
	if len(body) < 2 || body[0] != '#' || body[1] != '!' {
		return 0, false, true // EVAL compatibility mode
	}
	// strchr(body, '\n') on a C string: a NUL before the newline ends the
	// search, and "Invalid script shebang" follows.
	end := -1
	for i, c := range body {
		if c == '\n' {
			end = i
			break
		}
		if c == 0 {
			break
		}
	}
	if end < 0 {
		return 0, true, false
	}
	line := body[:end]
	if bytes.IndexByte(line, '"') < 0 && bytes.IndexByte(line, '\'') < 0 {
		flags, valid = plainShebang(line)
		return flags, true, valid
	}
	var m shebangMatcher
	if !splitArgs(line, &m) {
		return 0, true, false
	}
	return m.flags, true, true
}

// plainShebang is parseShebang for a line without quotes, the usual case:
// sdssplitargs then only splits (no escapes, so no NUL either), and the
// pieces can be compared where they lie.
func plainShebang(line []byte) (flags uint8, valid bool) {
	for i, p := 0, 0; ; i++ {
		for p < len(line) && isSpace(line[p]) {
			p++
		}
		if p == len(line) {
			return flags, true
		}
		start := p
		// An unquoted piece ends only at these ('\v' and '\f' do not end it).
		for p < len(line) && line[p] != ' ' && line[p] != '\t' && line[p] != '\r' {
			p++
		}
		piece := line[start:p]
		if i == 0 {
			if string(piece) != luaEngine {
				return 0, false
			}
			continue
		}
		rest, ok := bytes.CutPrefix(piece, []byte(flagsPrefix))
		if !ok {
			return 0, false
		}
		for len(rest) > 0 {
			name, tail, more := bytes.Cut(rest, []byte{','})
			f := scriptFlag(name)
			if f == 0 {
				return 0, false
			}
			flags |= f
			rest = tail
			if more && len(rest) == 0 {
				return 0, false // a trailing ',' leaves an empty name
			}
		}
	}
}

func scriptFlag(name []byte) uint8 {
	for k, n := range scriptFlagNames {
		if string(name) == n {
			return 1 << k
		}
	}
	return 0
}

// splitArgs is sdssplitargs (redis 7.0 sds.c) feeding m instead of building
// strings. It returns false where sdssplitargs returns NULL (unbalanced
// quotes, a closing quote followed by a non-space) or where m rejects a
// piece. line holds no NUL, so "end of the C string" is "end of line".
func splitArgs(line []byte, m *shebangMatcher) bool {
	at := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	p := 0
	for {
		for p < len(line) && isSpace(line[p]) {
			p++
		}
		if p >= len(line) {
			return true
		}
		m.begin()
		inq, insq := false, false
		for done := false; !done; {
			c := at(p)
			switch {
			case inq:
				switch {
				case c == '\\' && at(p+1) == 'x' && isHexDigit(at(p+2)) && isHexDigit(at(p+3)):
					m.byte(unhexAny(at(p+2))<<4 | unhexAny(at(p+3)))
					p += 3
				case c == '\\' && at(p+1) != 0:
					p++
					switch e := at(p); e {
					case 'n':
						m.byte('\n')
					case 'r':
						m.byte('\r')
					case 't':
						m.byte('\t')
					case 'b':
						m.byte('\b')
					case 'a':
						m.byte('\a')
					default:
						m.byte(e)
					}
				case c == '"':
					// The closing quote must be followed by a space or nothing.
					if n := at(p + 1); n != 0 && !isSpace(n) {
						return false
					}
					done = true
				case c == 0:
					return false // unterminated quotes
				default:
					m.byte(c)
				}
			case insq:
				switch {
				case c == '\\' && at(p+1) == '\'':
					p++
					m.byte('\'')
				case c == '\'':
					if n := at(p + 1); n != 0 && !isSpace(n) {
						return false
					}
					done = true
				case c == 0:
					return false
				default:
					m.byte(c)
				}
			default:
				switch c {
				// Not isspace: '\v' and '\f' end no unquoted piece.
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					m.byte(c)
				}
			}
			if at(p) != 0 {
				p++
			}
		}
		if !m.end() {
			return false
		}
	}
}

// shebangMatcher checks the pieces of a shebang line as evalExtractShebangFlags
// does: piece 0 must be "#!lua"; every other piece must start with "flags="
// and the rest, split on ',' (sdssplitlen: empty pieces kept, nothing at all
// for an empty rest), must name known flags.
type shebangMatcher struct {
	flags uint8
	piece int  // index of the current piece
	n     int  // bytes of the current piece so far
	pre   int  // piece 0: bytes before its first NUL
	nul   bool // piece 0: a NUL was seen
	// Pieces after the first, once "flags=" matched:
	restLen int   // bytes after "flags="
	segLen  int   // bytes of the current flag name before any NUL
	segNul  bool  // the current flag name had a NUL
	cand    uint8 // scriptFlagNames entries the flag name still matches
	bad     bool
}

const luaEngine = "#!lua"
const flagsPrefix = "flags="

func (m *shebangMatcher) begin() {
	m.n, m.pre, m.nul, m.bad, m.restLen = 0, 0, false, false, 0
	m.startSeg()
}

func (m *shebangMatcher) startSeg() {
	m.segLen, m.segNul, m.cand = 0, false, 1<<len(scriptFlagNames)-1
}

func (m *shebangMatcher) byte(c byte) {
	i := m.n
	m.n++
	if m.bad {
		return
	}
	if m.piece == 0 {
		// strcmp(parts[0], "#!lua"): equal up to the first NUL.
		if m.nul {
			return
		}
		if c == 0 {
			m.nul = true
			return
		}
		if i >= len(luaEngine) || luaEngine[i] != c {
			m.bad = true
		}
		m.pre++
		return
	}
	if i < len(flagsPrefix) {
		// strncmp(parts[j], "flags=", 6): a NUL differs from every byte.
		if flagsPrefix[i] != c {
			m.bad = true
		}
		return
	}
	m.restLen++
	if c == ',' {
		if !m.endSeg() {
			m.bad = true
		}
		m.startSeg()
		return
	}
	if m.segNul {
		return
	}
	if c == 0 {
		m.segNul = true
		return
	}
	var cand uint8
	for k, name := range scriptFlagNames {
		if m.cand&(1<<k) != 0 && m.segLen < len(name) && name[m.segLen] == c {
			cand |= 1 << k
		}
	}
	m.cand = cand
	m.segLen++
}

// endSeg applies strcmp(flag, name) for the finished flag name.
func (m *shebangMatcher) endSeg() bool {
	for k, name := range scriptFlagNames {
		if m.cand&(1<<k) != 0 && len(name) == m.segLen {
			m.flags |= 1 << k
			return true
		}
	}
	return false // "Unexpected flag in script shebang"
}

// end closes the current piece and says whether it is acceptable.
func (m *shebangMatcher) end() bool {
	piece := m.piece
	m.piece++
	if m.bad {
		return false
	}
	if piece == 0 {
		return m.pre == len(luaEngine)
	}
	if m.n < len(flagsPrefix) {
		return false // "Unknown lua shebang option"
	}
	if m.restLen == 0 {
		return true // "flags=": sdssplitlen of nothing is no flags
	}
	return m.endSeg()
}

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhexAny(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}
