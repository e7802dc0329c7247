package replstream

import (
	"cmp"
	"slices"
	"sync"

	"github.com/replproxy/replproxy/resp"
)

// marks remembers where, in the stream, transactions began and ended and
// which database each SELECT chose: what a replay of a stream suffix
// needs to start at a command that a replica can run on its own. The link
// goroutine writes; ReplayStart reads, rarely (after a failover), under mu.
type marks struct {
	mu sync.Mutex
	// txs are the last maxMarks transactions: the offset just before their
	// MULTI and the offset after their EXEC (or DISCARD); openTx is the
	// start of one not closed yet (-1: none).
	txs    []span
	openTx int64
	// selects are the last maxMarks SELECTs: the offset just before each
	// and the db it chose; dbBefore is the db in effect before selects[0]
	// (-1: unknown, the stream began before the proxy saw a SELECT).
	selects  []dbMark
	dbBefore int
	init     bool
	// voids are stream ranges (start, end] that were never executed in
	// this history: the queued part of a transaction a fork's split cut
	// (the node continuing from the split discarded it, and no EXEC for it
	// follows). A replay must leave them out. At most maxVoids.
	voids []span
}

const maxVoids = 8

type span struct{ start, end int64 }

type dbMark struct {
	off int64
	db  int
}

// maxMarks bounds each list; older marks are forgotten (a replay that
// needs one then starts from where the history is certain, or not at all).
const maxMarks = 4096

// note records one stream command occupying offsets (before, after]: its
// argument count, name and first argument (nil when it has none) are all a
// mark needs.
func (m *marks) note(argc int, name, arg1 []byte, before, after int64) {
	if argc == 0 {
		return
	}
	switch {
	case resp.EqualFold(name, "SELECT") && argc == 2:
		db, ok := resp.ParseInt(arg1)
		if !ok {
			return
		}
		m.mu.Lock()
		m.setup()
		if len(m.selects) == maxMarks {
			m.dbBefore = m.selects[0].db
			m.selects = append(m.selects[:0], m.selects[1:]...)
		}
		m.selects = append(m.selects, dbMark{before, int(db)})
		m.mu.Unlock()
	case resp.EqualFold(name, "MULTI"):
		m.mu.Lock()
		m.setup()
		m.openTx = before
		m.mu.Unlock()
	case resp.EqualFold(name, "EXEC") || resp.EqualFold(name, "DISCARD"):
		m.mu.Lock()
		m.setup()
		if m.openTx >= 0 {
			if len(m.txs) == maxMarks {
				m.txs = append(m.txs[:0], m.txs[1:]...)
			}
			m.txs = append(m.txs, span{m.openTx, after})
			m.openTx = -1
		}
		m.mu.Unlock()
	}
}

func (m *marks) setup() {
	if !m.init {
		m.init, m.openTx, m.dbBefore = true, -1, -1
	}
}

func (m *marks) replayStart(from int64) (int64, int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setup()
	start := from
	for i := len(m.txs) - 1; i >= 0; i-- {
		t := m.txs[i]
		if t.start < from && from < t.end {
			start = t.start
			break
		}
		if t.end <= from {
			break
		}
	}
	if m.openTx >= 0 && m.openTx < start {
		start = m.openTx
	}
	for _, v := range m.voids {
		if v.start < start && start < v.end {
			start = v.end // never executed here: nothing to replay of it
		}
	}
	db := m.dbBefore
	for _, s := range m.selects {
		if s.off >= start {
			break
		}
		db = s.db
	}
	if db < 0 {
		return start, 0, false
	}
	return start, db, true
}

// fork returns the marks of a history that continues this one after
// offset split (Link.forkAt): the transactions that ended by then and the
// SELECTs before it. A transaction open at the split becomes a void: the
// node that continues from there discarded its queued part when it was
// promoted, and its own stream after the split holds no EXEC for it.
func (m *marks) fork(split int64) *marks {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setup()
	nm := &marks{init: true, openTx: -1, dbBefore: m.dbBefore}
	for _, t := range m.txs {
		switch {
		case t.end <= split:
			nm.txs = append(nm.txs, t)
		case t.start < split:
			nm.voids = append(nm.voids, span{t.start, split})
		}
	}
	if m.openTx >= 0 && m.openTx < split {
		nm.voids = append(nm.voids, span{m.openTx, split})
	}
	for _, v := range m.voids {
		if v.end <= split {
			nm.voids = append(nm.voids, v)
		}
	}
	if len(nm.voids) > maxVoids {
		nm.voids = nm.voids[len(nm.voids)-maxVoids:]
	}
	for _, s := range m.selects {
		if s.off < split {
			nm.selects = append(nm.selects, s)
		}
	}
	return nm
}

// voidsAfter returns the voids that end after offset from, in stream
// order.
func (m *marks) voidsAfter(from int64) []span {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []span
	for _, v := range m.voids {
		if v.end > from {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	return out
}
