package proxy

import "testing"

// The epoch rules of settleFloor: a master read's floor is the offset of a
// ROLE that ran after it — one queued after the read on its own connection,
// or, with no such connection, one queued anywhere after the read ended.
func TestSettleFloor(t *testing.T) {
	const readEpoch = 10
	for _, tc := range []struct {
		name                 string
		noneP                bool   // nothing pending
		onConn               bool   // the read's ROLE follows it on its connection
		connClosed           bool   // that connection died
		loopEpoch, connEpoch uint64 // newest answered ROLE: on any connection, on the read's
		want                 bool
		wantFloor            int64
	}{
		{name: "nothing pending", noneP: true, want: true, wantFloor: 5},
		{name: "loop: only older samples", loopEpoch: readEpoch - 1, want: false, wantFloor: 5},
		{name: "loop: a later sample", loopEpoch: readEpoch + 1, want: true, wantFloor: 500},
		{name: "conn: a later sample elsewhere does not count", onConn: true, loopEpoch: readEpoch + 5, connEpoch: readEpoch - 1, want: false, wantFloor: 5},
		{name: "conn: its own later ROLE", onConn: true, loopEpoch: readEpoch + 5, connEpoch: readEpoch + 1, want: true, wantFloor: 400},
		{name: "conn: lost before its ROLE", onConn: true, connClosed: true, loopEpoch: readEpoch + 5, connEpoch: readEpoch - 1, want: false, wantFloor: 5},
		{name: "conn: lost after its ROLE answered", onConn: true, connClosed: true, connEpoch: readEpoch + 1, want: true, wantFloor: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &loop{epoch: 20, sampleEpoch: tc.loopEpoch, sampleOff: 500}
			s := &session{l: l, floor: 5}
			if !tc.noneP {
				s.floorEpoch = readEpoch
			}
			var b *backend
			if tc.onConn {
				b = &backend{l: l, state: stateOpen, sampleEpoch: tc.connEpoch, sampleOff: 400}
				if tc.connClosed {
					b.state = stateClosed
				}
				s.floorConn = b
			}
			if got := s.settleFloor(); got != tc.want {
				t.Fatalf("settleFloor() = %v, want %v", got, tc.want)
			}
			if s.floor != tc.wantFloor {
				t.Fatalf("floor = %d, want %d", s.floor, tc.wantFloor)
			}
			if tc.want && (s.floorEpoch != 0 || s.floorConn != nil) {
				t.Fatalf("settled floor still pending: epoch %d", s.floorEpoch)
			}
			if tc.connClosed && !tc.want {
				// Now any ROLE queued from here on settles it.
				if s.floorConn != nil || s.floorEpoch <= 20 {
					t.Fatalf("lost connection: pending epoch %d on %p", s.floorEpoch, s.floorConn)
				}
				l.sampleEpoch = l.epoch + 1
				if !s.settleFloor() || s.floor != 500 {
					t.Fatalf("not settled by a later ROLE: floor %d", s.floor)
				}
			}
		})
	}
}
