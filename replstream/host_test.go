package replstream

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
)

// testHost hosts the link's connection on a goroutine of its own, as the
// proxy's loop does: it reads, calls Feed, writes what Feed returns, and
// records what the link asked of it.
type testHost struct {
	decline  atomic.Bool
	attached atomic.Int32
	mu       sync.Mutex
	cur      *testHosted
	acks     int // REPLCONF ACKs written (Feed's and Write's)
	fedAcks  int // of them, the ones Feed returned (GETACK answers)
}

func (h *testHost) Attach(conn net.Conn, f *Feed) (Hosted, error) {
	if h.decline.Load() {
		return nil, nil
	}
	// As gnet's Enroll does: a duplicate of the socket, the original
	// closed (closing it no longer closes the connection).
	file, err := conn.(*net.TCPConn).File()
	conn.Close()
	if err != nil {
		return nil, err
	}
	dup, err := net.FileConn(file)
	file.Close()
	if err != nil {
		return nil, err
	}
	h.attached.Add(1)
	th := &testHosted{host: h, conn: dup, done: make(chan error, 1)}
	h.mu.Lock()
	h.cur = th
	h.mu.Unlock()
	go th.run(f)
	return th, nil
}

func (h *testHost) counts() (acks, fed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.acks, h.fedAcks
}

type testHosted struct {
	host *testHost
	conn net.Conn
	wmu  sync.Mutex
	done chan error
	once sync.Once
}

func (th *testHosted) run(f *Feed) {
	buf := make([]byte, 1000) // small reads: frames split across Feeds
	var err error
	for {
		var n int
		n, err = th.conn.Read(buf)
		if n > 0 {
			out, ferr := f.Feed(buf[:n])
			if len(out) > 0 {
				th.write(out, true)
			}
			if ferr != nil {
				err = ferr
				break
			}
		}
		if err != nil {
			break
		}
	}
	th.conn.Close()
	th.done <- err
}

func (th *testHosted) write(p []byte, fed bool) {
	th.wmu.Lock()
	th.conn.Write(p)
	th.wmu.Unlock()
	if n := bytes.Count(p, []byte("ACK")); n > 0 {
		th.host.mu.Lock()
		th.host.acks += n
		if fed {
			th.host.fedAcks += n
		}
		th.host.mu.Unlock()
	}
}

func (th *testHosted) Write(p []byte)     { th.write(append([]byte(nil), p...), false) }
func (th *testHosted) Close() error       { return th.conn.Close() }
func (th *testHosted) Done() <-chan error { return th.done }

// hostedLink starts a link on addr with a testHost and waits until the
// Host reads its stream.
func hostedLink(t *testing.T, addr string, mod func(*Config)) (*Link, *testHost) {
	t.Helper()
	host := &testHost{}
	link, _ := startLink(t, addr, func(c *Config) {
		c.Host = host
		mod(c)
	})
	waitConnected(t, link)
	waitFor(t, testTimeout, "hosted", func() error {
		if host.attached.Load() != 1 {
			return errors.New("not hosted")
		}
		return nil
	})
	return link, host
}

// TestHostedStream: a Host reads the stream, in reads that split frames;
// the link's offset follows the master's exactly, the periodic ack goes
// through Hosted.Write and a GETACK's answer through what Feed returns.
// When the hosted connection drops, the link reconnects, continues with
// a partial resync and offers it to the Host again.
func TestHostedStream(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{})
	link, host := hostedLink(t, topo.Master.Addr(), func(c *Config) { c.AckInterval = 50 * time.Millisecond })
	ctx := ctxT(t)
	c := topo.Master.Client()
	for i := range 200 {
		c.Set(ctx, fmt.Sprintf("k%d", i), strings.Repeat("v", i*13), 0)
	}
	waitOffsetEqual(t, link, topo.Master)
	if host.attached.Load() != 1 {
		t.Fatalf("attached %d times, want 1", host.attached.Load())
	}
	// WAIT makes the master send REPLCONF GETACK.
	c.Do(ctx, "WAIT", 1, 50)
	waitFor(t, testTimeout, "acks, periodic and GETACK's", func() error {
		if acks, fed := host.counts(); acks-fed < 2 || fed < 1 {
			return fmt.Errorf("%d acks, %d of them Feed's", acks, fed)
		}
		return nil
	})
	// The connection drops under the link.
	host.mu.Lock()
	host.cur.conn.Close()
	host.mu.Unlock()
	waitFor(t, testTimeout, "hosted again after a partial resync", func() error {
		if st := link.Stats(); host.attached.Load() != 2 || st.PartialSyncs < 1 || !link.Connected() {
			return fmt.Errorf("attached %d, stats %+v", host.attached.Load(), st)
		}
		return nil
	})
	c.Set(ctx, "after", 1, 0)
	waitOffsetEqual(t, link, topo.Master)
	if st := link.Stats(); st.FullSyncs != 1 {
		t.Errorf("full syncs %d, want 1", st.FullSyncs)
	}
}

// TestHostedReadTimeout: while a Host reads the stream, a paused master
// is still found out by the read timeout, the link's goroutine closes the
// hosted connection, and a Host that declines gets the stream read by the
// link's goroutine again.
func TestHostedReadTimeout(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{})
	link, host := hostedLink(t, topo.Master.Addr(), func(c *Config) {
		c.ReadTimeout = 300 * time.Millisecond
		c.AckInterval = 100 * time.Millisecond
	})
	host.decline.Store(true)
	topo.Master.Pause()
	waitReadTimeout(t, link)
	topo.Master.Resume()
	topo.Master.Client().Set(ctxT(t), "k", 1, 0)
	waitOffsetEqual(t, link, topo.Master)
	if host.attached.Load() != 1 {
		t.Errorf("attached %d times, want 1 (declined since)", host.attached.Load())
	}
}

// TestHostedSetMaster: SetMaster closes a hosted connection at once (not
// at the read timeout) and the link follows the new master.
func TestHostedSetMaster(t *testing.T) {
	t.Parallel()
	a := redistest.Start(t, redistest.Options{})
	b := redistest.Start(t, redistest.Options{})
	link, _ := hostedLink(t, a.Master.Addr(), func(c *Config) { c.ReadTimeout = time.Minute })
	link.SetMaster(b.Master.Addr())
	b.Master.Client().Set(ctxT(t), "k", 1, 0)
	waitFor(t, 10*time.Second, "following the new master", func() error {
		if link.ReplID() != b.Master.Info(t, "replication")["master_replid"] {
			return errors.New("not on the new master's history")
		}
		return nil
	})
	waitOffsetEqual(t, link, b.Master)
}
