package replstream

import "testing"

// TestHistoryOfPrefersHistoryHoldingFrom: the link forked its history at a
// promoted replica's split (F, the replica's ID), could not stream from
// the replica, and later full-resynced from it at a far higher offset (N,
// the same ID). A replay of the replica's writes after the split must get
// F, whose bytes reach back to the split, not N, which reaches further but
// starts after it (its marks know nothing before its start: the replay
// would count the whole suffix lost). Only when no history holds the
// offset asked does one that starts later answer, so the caller can say
// how much is lost.
func TestHistoryOfPrefersHistoryHoldingFrom(t *testing.T) {
	const (
		oldID = "1111111111111111111111111111111111111111"
		r1ID  = "2222222222222222222222222222222222222222"
		split = 2_100_125
	)
	mk := func(replid string, start, off int64, aliases ...alias) *history {
		h := &history{replid: replid, start: start, aliases: aliases}
		h.offset.Store(off)
		return h
	}
	old := mk(oldID, 100, 16_785_631)                 // the old master's, whole
	fork := mk(r1ID, 100, split, alias{oldID, split}) // forked at R1's split
	resync := mk(r1ID, 16_800_000, 16_900_000)        // a full resync from R1
	later := mk(r1ID, 16_800_000, 16_900_000)         // the same, with no fork kept
	for _, tc := range []struct {
		name      string
		cur       *history
		prevs     []*history
		replid    string
		at        int64
		want      *history
		wantFound bool
	}{
		{"the fork, not the later resync", resync, []*history{fork, old}, r1ID, split, fork, true},
		{"the resync past its start", resync, []*history{fork, old}, r1ID, 16_850_000, resync, true},
		{"the later resync when nothing holds the offset", later, []*history{old}, r1ID, split, later, true},
		{"the old ID: the old history, furthest", resync, []*history{fork, old}, oldID, split, old, true},
		{"an ID never followed", resync, []*history{fork, old}, "3333333333333333333333333333333333333333", 0, nil, false},
	} {
		l, err := New(Config{Master: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		l.hist.Store(tc.cur)
		prevs := tc.prevs
		l.prevs.Store(&prevs)
		got, ok := l.HistoryOf(tc.replid, tc.at)
		if ok != tc.wantFound || got.h != tc.want {
			t.Errorf("%s: HistoryOf(%s, %d) = %p (%v), want %p", tc.name, tc.replid[:4], tc.at, got.h, ok, tc.want)
		}
	}
}

// TestHistoryHolds: a history holds its own ID and its aliases' (up to
// each upTo), and nothing below its start.
func TestHistoryHolds(t *testing.T) {
	h := &history{replid: "b", start: 1000, aliases: []alias{{"a", 5000}}}
	for _, tc := range []struct {
		replid string
		at     int64
		want   bool
	}{
		{"b", 1000, true},
		{"b", 999, false},
		{"b", 1 << 40, true},
		{"a", 5000, true},
		{"a", 5001, false},
		{"a", 999, false},
		{"c", 2000, false},
		{"", 2000, false},
	} {
		if got := h.holds(tc.replid, tc.at); got != tc.want {
			t.Errorf("holds(%q, %d) = %v, want %v", tc.replid, tc.at, got, tc.want)
		}
	}
}
