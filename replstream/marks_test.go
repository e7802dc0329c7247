package replstream

import "testing"

// note hands a command's arguments to m.note as the stream reader does.
func note(m *marks, a [][]byte, lo, hi int64) {
	name, arg1 := nameAndFirst(a)
	m.note(len(a), name, arg1, lo, hi)
}

func args(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, x := range s {
		out[i] = []byte(x)
	}
	return out
}

// The stream below, by offsets: SELECT 0 (0,10], SET (10,20], MULTI (20,30],
// SET (30,40], SET (40,50], EXEC (50,60], SELECT 3 (60,70], SET (70,80],
// MULTI (80,90] (still open), SET (90,100].
func TestReplayStart(t *testing.T) {
	var m marks
	for _, c := range []struct {
		a      []string
		lo, hi int64
	}{
		{[]string{"SELECT", "0"}, 0, 10}, {[]string{"SET", "a", "1"}, 10, 20},
		{[]string{"MULTI"}, 20, 30}, {[]string{"SET", "b", "1"}, 30, 40}, {[]string{"SET", "c", "1"}, 40, 50}, {[]string{"EXEC"}, 50, 60},
		{[]string{"SELECT", "3"}, 60, 70}, {[]string{"SET", "d", "1"}, 70, 80},
		{[]string{"MULTI"}, 80, 90}, {[]string{"SET", "e", "1"}, 90, 100},
	} {
		note(&m, args(c.a...), c.lo, c.hi)
	}
	for _, tc := range []struct {
		name  string
		from  int64
		start int64
		db    int
		ok    bool
	}{
		{"at a plain command boundary", 10, 10, 0, true},
		{"at the boundary before a MULTI", 20, 20, 0, true},
		// A replica that applied MULTI and one SET discarded them.
		{"inside a transaction: from its MULTI", 40, 20, 0, true},
		{"right after EXEC", 60, 60, 0, true},
		{"after SELECT 3: db 3", 70, 70, 3, true},
		{"inside the open transaction", 90, 80, 3, true},
		{"before the first SELECT: db unknown", 0, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, db, ok := m.replayStart(tc.from)
			if start != tc.start || ok != tc.ok || (ok && db != tc.db) {
				t.Fatalf("replayStart(%d) = %d, db %d, %v; want %d, db %d, %v", tc.from, start, db, ok, tc.start, tc.db, tc.ok)
			}
		})
	}
}

// TestMarksFork: the marks of a history forked at a split keep what ended
// before it, and forget a transaction open there (the node continuing
// from the split discarded it, and its stream has no EXEC for it).
func TestMarksFork(t *testing.T) {
	var m marks
	for _, c := range []struct {
		a      []string
		lo, hi int64
	}{
		{[]string{"SELECT", "0"}, 0, 10}, {[]string{"SET", "a", "1"}, 10, 20},
		{[]string{"MULTI"}, 20, 30}, {[]string{"SET", "b", "1"}, 30, 40}, {[]string{"EXEC"}, 40, 50},
		{[]string{"SELECT", "3"}, 50, 60}, {[]string{"MULTI"}, 60, 70}, {[]string{"SET", "e", "1"}, 70, 80},
	} {
		note(&m, args(c.a...), c.lo, c.hi)
	}
	for _, tc := range []struct {
		split, from, start int64
		db                 int
	}{
		{split: 80, from: 75, start: 80, db: 3}, // inside the transaction the split cut: from the split
		{split: 80, from: 60, start: 60, db: 3}, // before it: the replay leaves it out (Voids)
		{split: 80, from: 35, start: 20, db: 0}, // the closed one is kept
		{split: 35, from: 35, start: 35, db: 0}, // a transaction not closed by the split is gone
		{split: 60, from: 60, start: 60, db: 3},
	} {
		f := m.fork(tc.split)
		start, db, ok := f.replayStart(tc.from)
		if !ok || start != tc.start || db != tc.db {
			t.Errorf("fork at %d: replayStart(%d) = %d, db %d, %v; want %d, db %d", tc.split, tc.from, start, db, ok, tc.start, tc.db)
		}
	}
	// The cut transaction is a void of the fork; the closed one is not.
	if v := m.fork(80).voidsAfter(0); len(v) != 1 || v[0] != (span{60, 80}) {
		t.Errorf("voids of the fork at 80 = %v, want [(60, 80]]", v)
	}
	if v := m.fork(35).voidsAfter(0); len(v) != 1 || v[0] != (span{20, 35}) {
		t.Errorf("voids of the fork at 35 = %v, want [(20, 35]]", v)
	}
	if v := m.fork(80).fork(90).voidsAfter(70); len(v) != 1 || v[0] != (span{60, 80}) {
		t.Errorf("a fork of a fork keeps the void before its split: %v", v)
	}
	// The original is unchanged.
	if start, _, _ := m.replayStart(75); start != 60 {
		t.Errorf("the original's open transaction is gone: replayStart(75) = %d", start)
	}
}
