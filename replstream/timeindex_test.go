package replstream

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func TestTimeIndexLookup(t *testing.T) {
	x := newTimeIndex(4)
	if _, ok := x.lookup(0); ok {
		t.Fatal("empty index answered")
	}
	x.push(100, 1) // lower bound: the stream starts after offset 100
	if _, ok := x.lookup(100); ok {
		t.Fatal("index with only its lower bound answered")
	}
	x.push(110, 2)
	x.push(110, 99) // no progress: dropped
	x.push(105, 99) // backwards: dropped
	x.push(130, 3)
	for _, tc := range []struct {
		off int64
		at  int64
		ok  bool
	}{
		{99, 0, false},  // before the window
		{100, 2, true},  // byte 101 came with the second sample
		{109, 2, true},  // byte 110 too
		{110, 3, true},  // byte 111 with the third
		{129, 3, true},  // byte 130
		{130, 0, false}, // byte 131 has not arrived
	} {
		at, ok := x.lookup(tc.off)
		if at != tc.at || ok != tc.ok {
			t.Errorf("lookup(%d) = %d, %v; want %d, %v", tc.off, at, ok, tc.at, tc.ok)
		}
	}
	// Four samples kept: two more drop the sample 100, and 110 becomes
	// the lower bound.
	x.push(140, 4)
	x.push(150, 5)
	if _, ok := x.lookup(109); ok {
		t.Error("lookup(109) answered after its sample was dropped")
	}
	if at, ok := x.lookup(110); !ok || at != 3 {
		t.Errorf("lookup(110) = %d, %v; want 3", at, ok)
	}
	if at, ok := x.lookup(130); !ok || at != 4 {
		t.Errorf("lookup(130) = %d, %v; want 4", at, ok)
	}
	if at, ok := x.lookup(149); !ok || at != 5 {
		t.Errorf("lookup(149) = %d, %v; want 5", at, ok)
	}
}

// TestTimeIndexConcurrent: readers racing a writer that laps a small ring
// many times only ever get correct answers. Sample i has end 10*i and time i,
// so byte off+1 arrived at time off/10+1.
func TestTimeIndexConcurrent(t *testing.T) {
	x := newTimeIndex(8)
	const samples = 200000
	var head atomic.Int64
	var wg sync.WaitGroup
	var answered atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				h := head.Load()
				if h >= samples {
					return
				}
				off := max(0, 10*h-int64(rand.IntN(100)))
				at, ok := x.lookup(off)
				if ok {
					answered.Add(1)
					if at != off/10+1 {
						t.Errorf("lookup(%d) = %d, want %d", off, at, off/10+1)
						return
					}
				}
			}
		}()
	}
	for i := range int64(samples) {
		x.push(10*i, i)
		head.Store(i)
	}
	head.Store(samples)
	wg.Wait()
	if answered.Load() == 0 {
		t.Error("readers never got an answer")
	}
}

func TestBacklog(t *testing.T) {
	const base = 1000
	b := newBacklog(100, base) // segments of 25 bytes, 5 slots
	if got, ok := b.appendTo(nil, base); !ok || len(got) != 0 {
		t.Fatalf("empty backlog from its base = %q, %v", got, ok)
	}
	if _, ok := b.appendTo(nil, base-1); ok {
		t.Fatal("answered before its base")
	}
	var all []byte
	rng := rand.New(rand.NewPCG(1, 2))
	for len(all) < 1000 {
		p := make([]byte, rng.IntN(40))
		for i := range p {
			p[i] = byte('a' + rng.IntN(26))
		}
		b.write(p)
		if got, _ := b.appendTo(nil, base+int64(len(all))); len(got) != 0 {
			t.Fatalf("unpublished bytes visible: %q", got)
		}
		b.publish()
		all = append(all, p...)
		end := base + int64(len(all))
		// At least 100 bytes are kept; anything returned is exact.
		for from := end - int64(len(all)); from <= end; from++ {
			got, ok := b.appendTo([]byte("prefix"), from)
			if !ok {
				if end-from <= 100 {
					t.Fatalf("from %d (end %d): not kept", from, end)
				}
				if string(got) != "prefix" {
					t.Fatalf("dst changed on failure: %q", got)
				}
				continue
			}
			if want := all[from-base:]; !bytes.Equal(got[6:], want) {
				t.Fatalf("from %d: %q, want %q", from, got[6:], want)
			}
		}
		if _, ok := b.appendTo(nil, end+1); ok {
			t.Fatal("answered beyond the end")
		}
	}
}

// TestBacklogConcurrent: readers copying while the writer laps the segments
// get the exact stream or ok=false, never torn bytes (and -race sees no race).
func TestBacklogConcurrent(t *testing.T) {
	b := newBacklog(256, 0)
	// Byte at offset o (1-based) is byte(o % 251): a reader can check any
	// slice against its offset.
	const total = 1 << 20
	var wg sync.WaitGroup
	var done atomic.Bool
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for !done.Load() {
				end := b.end.Load()
				from := max(0, end-int64(rand.IntN(300)))
				var ok bool
				buf, ok = b.appendTo(buf[:0], from)
				if !ok {
					continue
				}
				for i, c := range buf {
					if o := from + int64(i) + 1; c != byte(o%251) {
						t.Errorf("offset %d: %d, want %d", o, c, byte(o%251))
						return
					}
				}
			}
		}()
	}
	chunk := make([]byte, 0, 64)
	for o := int64(1); o <= total; {
		chunk = chunk[:0]
		for range rand.IntN(64) + 1 {
			chunk = append(chunk, byte(o%251))
			o++
		}
		b.write(chunk)
		b.publish()
	}
	done.Store(true)
	wg.Wait()
}

// TestTimeIndexMatchesLinearScan compares lookup with the definition on
// random sample sequences and ring sizes.
func TestTimeIndexMatchesLinearScan(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for range 200 {
		size := 2 + rng.IntN(20)
		x := newTimeIndex(size)
		type sample struct{ end, at int64 }
		var all []sample
		end := int64(rng.IntN(1000))
		for range rng.IntN(60) {
			x.push(end, int64(len(all)))
			all = append(all, sample{end, int64(len(all))})
			end += 1 + int64(rng.IntN(50))
		}
		kept := all[max(0, len(all)-size):]
		for off := int64(-1); len(all) > 0 && off <= all[len(all)-1].end+1; off++ {
			var want int64
			wantOK := false
			if len(kept) >= 2 && kept[0].end <= off {
				for _, s := range kept[1:] {
					if s.end > off {
						want, wantOK = s.at, true
						break
					}
				}
			}
			if at, ok := x.lookup(off); ok != wantOK || at != want {
				t.Fatalf("size %d samples %v: lookup(%d) = %d, %v; want %d, %v", size, all, off, at, ok, want, wantOK)
			}
		}
	}
}

// TestBacklogResize grows and shrinks the ring while writing: growing
// keeps every byte held, shrinking keeps the newest that fit, and a
// reader running meanwhile (-race) only ever gets exact bytes.
func TestBacklogResize(t *testing.T) {
	const base = 0
	b := newBacklog(100, base) // 25-byte segments
	var all []byte
	write := func(n int) {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte('a' + (len(all)+i)%26)
		}
		b.write(p)
		b.publish()
		all = append(all, p...)
	}
	kept := func() int {
		end := int64(len(all))
		for from := int64(0); from <= end; from++ {
			if got, ok := b.appendTo(nil, from); ok {
				if !bytes.Equal(got, all[from:]) {
					t.Fatalf("from %d: %q, want %q", from, got, all[from:])
				}
				return int(end - from)
			}
		}
		t.Fatal("not even the end is kept")
		return 0
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a reader racing the resizes
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			end := b.end.Load()
			_, _ = b.appendTo(nil, max(0, end-80))
		}
	}()
	write(300)
	before := kept()
	if before < 100 {
		t.Fatalf("keeps %d bytes, want >= 100", before)
	}
	b.resize(1000)
	if got := kept(); got != before {
		t.Fatalf("growing changed what is kept: %d -> %d", before, got)
	}
	write(900)
	if got := kept(); got < 1000 {
		t.Fatalf("after growing to 1000 and writing 900 more, keeps %d", got)
	}
	if c := b.capacity(); c < 1000 {
		t.Fatalf("capacity %d after resize(1000)", c)
	}
	b.resize(100)
	if got := kept(); got < 100 || got > 150 {
		t.Fatalf("after shrinking to 100, keeps %d bytes, want the newest 100-150", got)
	}
	write(500)
	if got := kept(); got < 100 || got > 150 {
		t.Fatalf("after shrinking and writing, keeps %d", got)
	}
	close(stop)
	<-done
}

// TestBacklogFork: a fork at any split holds exactly the bytes up to it
// that the original still keeps, takes its own bytes after it, and leaves
// the original unchanged (full segments are shared, so a write into the
// fork must never show through).
func TestBacklogFork(t *testing.T) {
	const base = 1000
	rng := rand.New(rand.NewPCG(3, 4))
	randBytes := func(n int, from byte) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = from + byte(rng.IntN(26))
		}
		return p
	}
	// Splits at a segment boundary (25-byte segments), inside one, at the
	// end, at the base, and below what is kept.
	for _, split := range []int64{base, base + 1, base + 25, base + 37, base + 250, base + 290, base + 299, base + 300} {
		b := newBacklog(100, base)
		orig := randBytes(300, 'a')
		b.write(orig)
		b.publish()
		had := map[int64]bool{}
		for from := int64(base); from <= split; from++ {
			_, had[from] = b.appendTo(nil, from)
		}
		f := b.fork(split)
		if f.end.Load() != split || f.written != split {
			t.Fatalf("split %d: fork ends at %d (written %d)", split, f.end.Load(), f.written)
		}
		own := randBytes(60, 'A')
		f.write(own)
		f.publish()
		b.write(randBytes(10, '0')) // the original goes on too
		b.publish()
		want := append(append([]byte(nil), orig[:split-base]...), own...)
		fend := split + int64(len(own))
		kept := 0
		for from := int64(base); from <= fend; from++ {
			got, ok := f.appendTo(nil, from)
			if !ok {
				// Lost only what the original no longer had, or what a
				// fork's ring has no room for.
				if (from >= split || had[from]) && fend-from <= 100-25 {
					t.Fatalf("split %d: fork lost offset %d (end %d)", split, from, fend)
				}
				continue
			}
			kept++
			if !bytes.Equal(got, want[from-base:]) {
				t.Fatalf("split %d, from %d: fork %q, want %q", split, from, got, want[from-base:])
			}
		}
		if kept == 0 {
			t.Fatalf("split %d: the fork keeps nothing", split)
		}
		for from := int64(base + 300 - 100); from <= base+300; from++ {
			got, ok := b.appendTo(nil, from)
			if !ok || !bytes.Equal(got[:base+300-from], orig[from-base:]) {
				t.Fatalf("split %d: the original changed at %d: %q, %v", split, from, got, ok)
			}
		}
	}
	// Below the base: an empty backlog starting at the split.
	b := newBacklog(100, base)
	b.write(randBytes(50, 'a'))
	b.publish()
	if f := b.fork(base - 10); f.base != base-10 || f.end.Load() != base-10 {
		t.Fatalf("fork below the base: base %d end %d", f.base, f.end.Load())
	}
}

func TestTimeIndexFork(t *testing.T) {
	x := newTimeIndex(8)
	for i := int64(1); i <= 6; i++ {
		x.push(i*100, i*10) // bytes up to i*100 arrived at i*10
	}
	f := x.fork(250, 999)
	// The split's bytes arrived with the sample past it (300 at 30).
	for _, c := range []struct {
		off, at int64
		ok      bool
	}{{100, 20, true}, {199, 20, true}, {200, 30, true}, {249, 30, true}, {250, 0, false}} {
		at, ok := f.lookup(c.off)
		if ok != c.ok || (ok && at != c.at) {
			t.Errorf("fork lookup(%d) = %d, %v; want %d, %v", c.off, at, ok, c.at, c.ok)
		}
	}
	f.push(400, 50)
	if at, ok := f.lookup(300); !ok || at != 50 {
		t.Errorf("after a push, lookup(300) = %d, %v; want 50", at, ok)
	}
	if at, ok := x.lookup(300); !ok || at != 40 {
		t.Errorf("the original changed: lookup(300) = %d, %v; want 40", at, ok)
	}
}
