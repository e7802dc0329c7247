package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/replproxy/replproxy/resp"
)

// The mix load generator: the 80/20 read/write load of DESIGN.md's
// consistency target, which redis-benchmark cannot make (each of its runs is
// one command). It is redis-benchmark's load otherwise: -c connections, -n
// requests shared over them, -P requests in flight per connection, keys
// key:__rand_int__ over -r keys, -d bytes of 'x' per value. Raw RESP over
// one socket per client, because a client library's CPU would be charged to
// the proxy: the load shares CPU 1 with it.

// loadgenArg, as benchrun's first argument, makes the process the load
// generator (loadgenMain) instead of the benchmark driver. It is not in
// benchrun's own flag set, so -h does not offer it: only benchrun starts it,
// re-executing itself behind the same taskset prefix as redis-benchmark.
const loadgenArg = "-loadgen"

const (
	loadDialTimeout = 5 * time.Second
	// loadIOTimeout bounds one batch: its write and the wait for its
	// replies. A proxy that stops answering fails the run instead of hanging
	// it; no healthy reply comes near it (--causal-wait is milliseconds).
	loadIOTimeout = 10 * time.Second
	// loadMaxReplyBytes bounds one reply, far above any value a row writes
	// and far below redis's 512 MiB, so a confused peer cannot make the
	// generator allocate much.
	loadMaxReplyBytes = 16 << 20
	loadReadBufBytes  = 16 << 10

	// keyDigits is the width of redis-benchmark's __rand_int__ ("%012zu"
	// in redis-benchmark.c randomizeClientKey), so the generator hits the
	// keys `redis-benchmark -t set -r N` wrote.
	keyDigits   = 12
	maxKeyspace = 1_000_000_000_000 // 10^keyDigits
)

// loadConfig is one run of the load generator.
type loadConfig struct {
	addr        string
	clients     int    // connections, one goroutine each (-c)
	requests    int    // over all clients (-n)
	readPercent int    // share of GETs in percent; the rest are SETs
	pipeline    int    // requests sent per write on one connection (-P)
	keyspace    int    // keys are key:000000000000 .. keyspace-1 (-r)
	valueBytes  int    // SET value size (-d)
	seed        uint64 // client i draws from PCG(seed, i)
}

func (c loadConfig) validate() error {
	var bad []string
	check := func(ok bool, what string) {
		if !ok {
			bad = append(bad, what)
		}
	}
	check(c.addr != "", "-addr is empty")
	check(c.clients >= 1, "-c must be at least 1")
	check(c.requests >= 1, "-n must be at least 1")
	check(0 <= c.readPercent && c.readPercent <= 100, "-read-percent must be 0..100")
	check(c.pipeline >= 1, "-P must be at least 1")
	check(1 <= c.keyspace && c.keyspace <= maxKeyspace, "-r must be 1..10^12 (12-digit keys)")
	check(0 <= c.valueBytes && c.valueBytes <= loadMaxReplyBytes/2, "-d must be 0..8 MiB")
	if bad != nil {
		return fmt.Errorf("%w: %s", errBenchrunLoadConfig, strings.Join(bad, "; "))
	}
	return nil
}

// argv is the command line, after the executable, that makes loadgenMain
// run c.
func (c loadConfig) argv() []string {
	return []string{
		loadgenArg,
		"-addr", c.addr,
		"-c", strconv.Itoa(c.clients),
		"-n", strconv.Itoa(c.requests),
		"-read-percent", strconv.Itoa(c.readPercent),
		"-P", strconv.Itoa(c.pipeline),
		"-r", strconv.Itoa(c.keyspace),
		"-d", strconv.Itoa(c.valueBytes),
		"-seed", strconv.FormatUint(c.seed, 10),
	}
}

// parseLoadArgs reads loadgenMain's flags (those after loadgenArg).
func parseLoadArgs(args []string) (loadConfig, error) {
	fs := flag.NewFlagSet("benchrun "+loadgenArg, flag.ContinueOnError)
	var c loadConfig
	fs.StringVar(&c.addr, "addr", "", "server `host:port`")
	fs.IntVar(&c.clients, "c", 50, "connections")
	fs.IntVar(&c.requests, "n", 100000, "requests over all connections")
	fs.IntVar(&c.readPercent, "read-percent", 80, "percent of requests that are GETs; the rest are SETs")
	fs.IntVar(&c.pipeline, "P", 1, "requests per write on one connection")
	fs.IntVar(&c.keyspace, "r", keyspace, "keys drawn at random from key:000000000000 on")
	fs.IntVar(&c.valueBytes, "d", 3, "SET value size in bytes")
	fs.Uint64Var(&c.seed, "seed", 1, "client i draws from PCG(seed, i)")
	if err := fs.Parse(args); err != nil {
		return loadConfig{}, err
	}
	if fs.NArg() > 0 {
		return loadConfig{}, fmt.Errorf("%w: unexpected arguments %q", errBenchrunLoadConfig, fs.Args())
	}
	return c, c.validate()
}

// loadResult is one load generator run. Latencies are per request, from the
// write of its batch to the read that brought its reply, so at -P 1 they
// are redis-benchmark's.
type loadResult struct {
	requests, gets, sets int64
	nils                 int64 // GETs answered nil: the key was never written
	seconds              float64
	rps                  float64
	p50Ms, p99Ms         float64
	seed                 uint64
}

// loadLinePrefix starts the one line of stdout that loadgenMain prints for
// its parent, "loadgen key=value ...".
const loadLinePrefix = "loadgen"

var loadLineFields = []string{"requests", "gets", "sets", "nils", "seconds", "rps", "p50_ms", "p99_ms", "seed"}

func (r loadResult) line() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return fmt.Sprintf("%s requests=%d gets=%d sets=%d nils=%d seconds=%s rps=%s p50_ms=%s p99_ms=%s seed=%d",
		loadLinePrefix, r.requests, r.gets, r.sets, r.nils, f(r.seconds), f(r.rps), f(r.p50Ms), f(r.p99Ms), r.seed)
}

// parseLoadLine finds the result line in the generator's stdout. Fields are
// found by name, as parseBenchCSV finds columns, and every one is required,
// so a change on one side cannot be misread by the other.
func parseLoadLine(out []byte) (loadResult, error) {
	var found []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), loadLinePrefix+" "); ok {
			found = append(found, rest)
		}
	}
	if len(found) != 1 {
		return loadResult{}, fmt.Errorf("%w: want one %q line, got %d", errBenchrunLoadLine, loadLinePrefix, len(found))
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(found[0]) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return loadResult{}, fmt.Errorf("%w: field %q is not key=value", errBenchrunLoadLine, f)
		}
		kv[k] = v
	}
	var errs []error
	num := func(name string) string {
		v, ok := kv[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%w: no %s=", errBenchrunLoadLine, name))
		}
		return v
	}
	integer := func(name string) int64 {
		v := num(name)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil && v != "" {
			errs = append(errs, fmt.Errorf("%w: %s=%q: %v", errBenchrunLoadLine, name, v, err))
		}
		return n
	}
	float := func(name string) float64 {
		v := num(name)
		x, err := strconv.ParseFloat(v, 64)
		if err != nil && v != "" {
			errs = append(errs, fmt.Errorf("%w: %s=%q: %v", errBenchrunLoadLine, name, v, err))
		}
		return x
	}
	r := loadResult{
		requests: integer("requests"),
		gets:     integer("gets"),
		sets:     integer("sets"),
		nils:     integer("nils"),
		seconds:  float("seconds"),
		rps:      float("rps"),
		p50Ms:    float("p50_ms"),
		p99Ms:    float("p99_ms"),
	}
	seed := num("seed")
	if s, err := strconv.ParseUint(seed, 10, 64); err == nil {
		r.seed = s
	} else if seed != "" {
		errs = append(errs, fmt.Errorf("%w: seed=%q: %v", errBenchrunLoadLine, seed, err))
	}
	if err := errors.Join(errs...); err != nil {
		return loadResult{}, err
	}
	if r.requests <= 0 || r.gets < 0 || r.sets < 0 || r.gets+r.sets != r.requests || r.nils < 0 || r.nils > r.gets {
		return loadResult{}, fmt.Errorf("%w: inconsistent counts in %q", errBenchrunLoadLine, found[0])
	}
	return r, nil
}

// loadgenMain is the process entry of `benchrun -loadgen ...`: it runs the
// load and prints the result line on stdout, everything else on stderr.
func loadgenMain(args []string) int {
	cfg, err := parseLoadArgs(args)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "benchrun %s: %v\n", loadgenArg, err)
		}
		return 2
	}
	fmt.Fprintf(os.Stderr, "loadgen: %s: %d clients, %d requests, %d%% GET, -P %d, seed %d (client i draws from PCG(%d, i))\n",
		cfg.addr, cfg.clients, cfg.requests, cfg.readPercent, cfg.pipeline, cfg.seed, cfg.seed)
	res, err := runLoad(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		return 1
	}
	fmt.Println(res.line())
	return 0
}

// runLoadgen runs the load generator as a child process behind wrapper (the
// taskset prefix), so it runs where redis-benchmark would, and parses its
// result line.
func runLoadgen(wrapper []string, cfg loadConfig) (loadResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return loadResult{}, fmt.Errorf("finding benchrun's own binary for %s: %w", loadgenArg, err)
	}
	argv := append(slices.Clone(wrapper), exe)
	argv = append(argv, cfg.argv()...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return loadResult{}, fmt.Errorf("%s: %v\n%s%s", shellJoin(argv), err, stdout.String(), stderr.String())
	}
	res, err := parseLoadLine(stdout.Bytes())
	if err != nil {
		return loadResult{}, fmt.Errorf("%s: %w; output:\n%s%s", shellJoin(argv), err, stdout.String(), stderr.String())
	}
	return res, nil
}

// runLoad is the load generator itself: it connects every client, then
// times the run from the first request to the last reply.
func runLoad(cfg loadConfig) (loadResult, error) {
	if err := cfg.validate(); err != nil {
		return loadResult{}, err
	}
	clients := make([]*loadClient, 0, cfg.clients)
	defer func() {
		for _, c := range clients {
			c.conn.Close()
		}
	}()
	value := bytes.Repeat([]byte{'x'}, cfg.valueBytes) // redis-benchmark's filler
	for i := range cfg.clients {
		conn, err := net.DialTimeout("tcp", cfg.addr, loadDialTimeout)
		if err != nil {
			return loadResult{}, fmt.Errorf("client %d: %w", i, err)
		}
		clients = append(clients, newLoadClient(&cfg, uint64(i), conn, value))
	}

	var issued atomic.Int64
	var failed atomic.Bool
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range clients {
		wg.Go(func() {
			if err := c.run(&issued, &failed); err != nil {
				errs[i] = fmt.Errorf("client %d: %w", i, err)
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := firstErrors(errs, 3); err != nil {
		return loadResult{}, err
	}

	res := loadResult{seconds: elapsed.Seconds(), seed: cfg.seed}
	var hist latencyHist
	for _, c := range clients {
		res.gets += c.gets
		res.sets += c.sets
		res.nils += c.nils
		hist.merge(&c.hist)
	}
	res.requests = res.gets + res.sets
	res.rps = float64(res.requests) / elapsed.Seconds()
	res.p50Ms = hist.percentileMs(50)
	res.p99Ms = hist.percentileMs(99)
	return res, nil
}

// firstErrors joins the first keep errors and counts the rest: when a server
// dies, all 50 clients say so.
func firstErrors(errs []error, keep int) error {
	var kept []error
	more := 0
	for _, err := range errs {
		switch {
		case err == nil:
		case len(kept) < keep:
			kept = append(kept, err)
		default:
			more++
		}
	}
	if more > 0 {
		kept = append(kept, fmt.Errorf("and %d more clients failed", more))
	}
	return errors.Join(kept...)
}

type loadOp uint8

const (
	opGet loadOp = iota
	opSet
)

func (o loadOp) String() string {
	if o == opGet {
		return "GET"
	}
	return "SET"
}

var (
	cmdGet = []byte("GET")
	cmdSet = []byte("SET")
)

// loadClient is one connection of the load. Owned by its goroutine in
// runLoad; not safe for concurrent use.
type loadClient struct {
	cfg   *loadConfig
	conn  net.Conn
	rng   *rand.Rand
	value []byte // shared by all clients, read-only

	out  []byte   // the batch being sent
	ops  []loadOp // its requests, in order
	key  []byte
	scan *resp.ReplyScanner

	// in[r:w] are received bytes not yet consumed; arrived is when the
	// last read returned.
	in      []byte
	r, w    int
	arrived time.Time

	hist             latencyHist
	gets, sets, nils int64
}

func newLoadClient(cfg *loadConfig, id uint64, conn net.Conn, value []byte) *loadClient {
	return &loadClient{
		cfg:   cfg,
		conn:  conn,
		rng:   rand.New(rand.NewPCG(cfg.seed, id)),
		value: value,
		ops:   make([]loadOp, 0, cfg.pipeline),
		key:   make([]byte, 0, len("key:")+keyDigits),
		scan:  resp.NewReplyScanner(resp.Limits{MaxBulkBytes: loadMaxReplyBytes}),
		in:    make([]byte, loadReadBufBytes),
	}
}

// run sends batches of up to cfg.pipeline requests, each claimed from the
// shared issued counter as redis-benchmark's clients do, so no client idles
// while another still has a long share, until cfg.requests are claimed or
// another client failed.
func (c *loadClient) run(issued *atomic.Int64, failed *atomic.Bool) error {
	total, batch := int64(c.cfg.requests), int64(c.cfg.pipeline)
	for !failed.Load() {
		end := issued.Add(batch)
		if end-batch >= total {
			return nil
		}
		n := int(min(end, total) - (end - batch))
		c.out, c.ops = c.out[:0], c.ops[:0]
		for range n {
			c.key = appendKey(c.key[:0], c.rng.IntN(c.cfg.keyspace))
			if c.rng.IntN(100) < c.cfg.readPercent {
				c.out = resp.AppendCommand(c.out, cmdGet, c.key)
				c.ops = append(c.ops, opGet)
			} else {
				c.out = resp.AppendCommand(c.out, cmdSet, c.key, c.value)
				c.ops = append(c.ops, opSet)
			}
		}
		sent := time.Now()
		if err := c.conn.SetDeadline(sent.Add(loadIOTimeout)); err != nil {
			return err
		}
		if _, err := c.conn.Write(c.out); err != nil {
			return err
		}
		for _, op := range c.ops {
			reply, err := c.nextReply()
			if err != nil {
				return fmt.Errorf("reading the reply to %s: %w", op, err)
			}
			isNil, err := checkReply(op, reply)
			if err != nil {
				return err
			}
			c.hist.record(c.arrived.Sub(sent))
			if op == opGet {
				c.gets++
				if isNil {
					c.nils++
				}
			} else {
				c.sets++
			}
		}
	}
	return nil
}

// nextReply returns the next complete reply, reading as needed. The slice
// is valid until the next call.
func (c *loadClient) nextReply() ([]byte, error) {
	for {
		if c.r < c.w {
			n, err := c.scan.Scan(c.in[c.r:c.w])
			if err != nil {
				return nil, err
			}
			if n > 0 {
				reply := c.in[c.r : c.r+n]
				c.r += n
				return reply, nil
			}
		} else {
			c.r, c.w = 0, 0
		}
		// The scanner's offsets are relative to the reply's first byte, so
		// moving the partial reply to the front keeps them valid.
		need := max(c.scan.Need(), c.w-c.r+1)
		if c.w == len(c.in) || c.r+need > len(c.in) {
			c.w = copy(c.in, c.in[c.r:c.w])
			c.r = 0
			if need > len(c.in) {
				// Need is bounded by the scanner's limits.
				grown := make([]byte, max(need, 2*len(c.in)))
				copy(grown, c.in[:c.w])
				c.in = grown
			}
		}
		m, err := c.conn.Read(c.in[c.w:])
		if m > 0 {
			c.arrived = time.Now()
			c.w += m
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the server closed the connection")
		}
		return nil, err
	}
}

// checkReply accepts what redis answers a GET (a bulk string or nil) and a
// SET without options (+OK), and reports a GET's nil.
func checkReply(op loadOp, reply []byte) (isNil bool, err error) {
	if len(reply) == 0 {
		return false, fmt.Errorf("%w to %s: empty", errBenchrunUnexpectedReply, op)
	}
	if reply[0] == '-' || reply[0] == '!' {
		return false, fmt.Errorf("%w to %s: %s", errBenchrunErrorReply, op, shorten(reply))
	}
	switch op {
	case opGet:
		switch {
		case bytes.Equal(reply, []byte("$-1\r\n")) || bytes.Equal(reply, []byte("_\r\n")):
			return true, nil
		case reply[0] == '$':
			return false, nil
		}
	case opSet:
		if bytes.Equal(reply, []byte("+OK\r\n")) {
			return false, nil
		}
	}
	return false, fmt.Errorf("%w to %s: %s", errBenchrunUnexpectedReply, op, shorten(reply))
}

// shorten quotes a reply for an error message, cut to a readable length.
func shorten(reply []byte) string {
	const maxBytes = 200
	if len(reply) > maxBytes {
		return strconv.Quote(string(reply[:maxBytes])) + "..."
	}
	return strconv.Quote(string(reply))
}

// appendKey appends redis-benchmark's key:__rand_int__ for n: "key:" and n
// in keyDigits zero-padded digits. n must be in [0, maxKeyspace).
func appendKey(dst []byte, n int) []byte {
	dst = append(dst, "key:"...)
	var digits [keyDigits]byte
	for i := keyDigits - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
	return append(dst, digits[:]...)
}
