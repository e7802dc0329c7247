package topology

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/router"
)

// follower follows the master the Sentinels name, as Sentinel's client
// guidelines ask: ask SENTINEL get-master-addr-by-name, verify the answer
// with the node itself (it must say role:master), listen to the Sentinels'
// events for speed, and ask again every poll interval anyway, because a
// Pub/Sub message can be lost with its connection.
//
// It never fights Sentinel: it only moves to a node a Sentinel names that
// answers as a master, and a Sentinel that names a node answering as a
// replica (a stale or lying Sentinel) is passed over for the next one.
type follower struct {
	m    *Monitor
	name string
	kick chan struct{}

	mu      sync.Mutex
	known   []string // Sentinels, configured ones first, in order
	subbed  map[string]bool
	clients map[string]*redis.SentinelClient
	// fromSentinel: the replicas a Sentinel listed last time.
	fromSentinel map[string]bool
	// complained: the last node a Sentinel named that was not a master,
	// logged once.
	complained string
	// selected is the replica a Sentinel chose to promote (+selected-slave)
	// in a failover of the master followed now; selectedFor is that master.
	selected, selectedFor string
	ctx                   context.Context
}

func newFollower(m *Monitor) *follower {
	f := &follower{
		m:            m,
		name:         m.cfg.SentinelMaster,
		kick:         make(chan struct{}, 1),
		subbed:       make(map[string]bool),
		clients:      make(map[string]*redis.SentinelClient),
		fromSentinel: make(map[string]bool),
	}
	f.known = append(f.known, m.cfg.Sentinels...)
	return f
}

// selectedIs reports whether a Sentinel chose addr to replace master.
func (f *follower) selectedIs(addr, master string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.selected == addr && f.selectedFor == master
}

func (f *follower) kickNow() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *follower) sentinels() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.known...)
}

func (f *follower) listed(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fromSentinel[addr]
}

func (f *follower) client(addr string) *redis.SentinelClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.clients[addr]
	if c == nil {
		c = redis.NewSentinelClient(f.sentinelOptions(addr))
		f.clients[addr] = c
	}
	return c
}

func (f *follower) sentinelOptions(addr string) *redis.Options {
	cfg := &f.m.cfg
	return &redis.Options{
		Addr:            addr,
		Username:        cfg.SentinelUser,
		Password:        cfg.SentinelPassword,
		TLSConfig:       cfg.SentinelTLS,
		Protocol:        2,
		DialTimeout:     cfg.Timeout,
		ReadTimeout:     cfg.Timeout,
		WriteTimeout:    cfg.Timeout,
		PoolSize:        2,
		MaxRetries:      -1,
		DisableIdentity: true,
	}
}

func (f *follower) nodeOptions() *redis.Options {
	cfg := &f.m.cfg
	return &redis.Options{
		Username:        cfg.User,
		Password:        cfg.Password,
		TLSConfig:       cfg.TLS,
		Protocol:        2,
		DialTimeout:     cfg.Timeout,
		ReadTimeout:     cfg.Timeout,
		WriteTimeout:    cfg.Timeout,
		PoolSize:        1,
		MaxRetries:      -1,
		DisableIdentity: true,
	}
}

func (f *follower) run(ctx context.Context) {
	f.mu.Lock()
	f.ctx = ctx
	for _, s := range f.known {
		f.subscribeLocked(s)
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		for _, c := range f.clients {
			c.Close()
		}
		f.mu.Unlock()
	}()
	t := time.NewTicker(f.m.cfg.PollInterval)
	defer t.Stop()
	for i := 0; ; i++ {
		// Replicas and Sentinels change rarely: listed every 10th round.
		f.ask(ctx, i%10 == 0)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.kick:
		}
	}
}

// ask asks every Sentinel which node is the master (SENTINEL MASTER: the
// address and the config-epoch it belongs to) and follows the best answer
// the node itself confirms: the newest epoch first, as Sentinels settle
// disagreements among themselves, so a Sentinel that has not yet heard of
// a failover does not send the proxy back to the old master.
func (f *follower) ask(ctx context.Context, full bool) {
	var answers []sentinelAnswer
	from := map[string]string{}
	for _, s := range f.sentinels() {
		if ctx.Err() != nil {
			return
		}
		c := f.client(s)
		cctx, cancel := context.WithTimeout(ctx, f.m.cfg.Timeout)
		// GET-MASTER-ADDR-BY-NAME names the promoted replica as soon as
		// the leader has promoted it; SENTINEL MASTER's address changes
		// only at +switch-master, but its config-epoch tells the newest.
		addr, err := c.GetMasterAddrByName(cctx, f.name).Result()
		if err != nil || len(addr) != 2 {
			cancel()
			continue // down, or does not know the name: the next one
		}
		m, err := c.Master(cctx, f.name).Result()
		if err != nil {
			m = nil // an old Sentinel: the answer counts with epoch 0
		}
		if full {
			f.refreshLists(cctx, c)
		}
		cancel()
		a := sentinelAnswer{addr: net.JoinHostPort(addr[0], addr[1]), epoch: atoi64(m["config-epoch"], 0)}
		answers = append(answers, a)
		if _, ok := from[a.addr]; !ok {
			from[a.addr] = s
		}
	}
	for _, addr := range pickAnswer(answers) {
		if f.follow(ctx, addr, "Sentinel "+from[addr]+" names it") {
			return
		}
	}
}

func (f *follower) refreshLists(ctx context.Context, c *redis.SentinelClient) {
	if reps, err := c.Replicas(ctx, f.name).Result(); err == nil {
		var addrs []string
		listed := make(map[string]bool, len(reps))
		for _, r := range reps {
			if a, ok := sentinelReplica(r); ok {
				addrs = append(addrs, a)
				listed[a] = true
			}
		}
		f.mu.Lock()
		f.fromSentinel = listed
		f.mu.Unlock()
		f.m.addSentinelReplicas(addrs)
	}
	if peers, err := c.Sentinels(ctx, f.name).Result(); err == nil {
		f.mu.Lock()
		for _, p := range peers {
			if p["ip"] == "" || p["port"] == "" {
				continue
			}
			a := net.JoinHostPort(p["ip"], p["port"])
			if !contains(f.known, a) {
				f.m.log.Info("Sentinel discovered", "sentinel", a)
				f.known = append(f.known, a)
				f.subscribeLocked(a)
			}
		}
		f.mu.Unlock()
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// follow moves to addr if it is not the master already and answers as a
// master. It reports whether addr is the master now.
func (f *follower) follow(ctx context.Context, addr, cause string) bool {
	cur := f.m.masterState()
	if cur.Addr == addr && cur.Reachable && cur.Role == "master" {
		return true
	}
	info, err := nodeInfo(ctx, addr, f.nodeOptions(), f.m.cfg.Timeout)
	var cand router.NodeState
	if err == nil {
		applyInfo(&cand, info)
		if predecessor(&cand, &cur) {
			// The master ours was promoted from, not yet demoted.
			info["role"] = "master the current one was promoted from"
			err = errPredecessor
		}
	}
	if err != nil || roleName(info["role"]) != "master" {
		f.mu.Lock()
		if f.complained != addr {
			f.complained = addr
			role := info["role"]
			if err != nil {
				role = err.Error()
			}
			f.m.log.Warn("Sentinel names a node that is not a master: not used", "node", addr, "cause", cause, "answer", role)
		}
		f.mu.Unlock()
		return false
	}
	f.mu.Lock()
	f.complained = ""
	f.mu.Unlock()
	if cur.Addr == addr {
		return true // the master, answering again: its poller sees it
	}
	f.m.SwitchMaster(addr, cause, info)
	return true
}

// subscribeLocked listens to one Sentinel's events until the follower
// stops. go-redis re-subscribes by itself after a lost connection.
func (f *follower) subscribeLocked(addr string) {
	if f.subbed[addr] || f.ctx == nil {
		return
	}
	f.subbed[addr] = true
	ctx := f.ctx
	f.m.wg.Add(1)
	go func() {
		defer f.m.wg.Done()
		c := redis.NewSentinelClient(f.sentinelOptions(addr))
		defer c.Close()
		ps := c.PSubscribe(ctx, "*")
		stop := context.AfterFunc(ctx, func() { ps.Close() })
		defer stop()
		for msg := range ps.Channel(redis.WithChannelHealthCheckInterval(time.Second)) {
			f.onEvent(ctx, addr, msg.Channel, msg.Payload)
		}
	}()
}

func (f *follower) onEvent(ctx context.Context, from, channel, payload string) {
	ev, ok := parseSentinelEvent(channel, payload, f.name)
	if !ok {
		return
	}
	switch ev.kind {
	case evSwitch, evPromoted:
		// Not trusted blindly: follow checks the node says role:master.
		f.follow(ctx, ev.addr, "Sentinel "+from+" "+channel)
	case evFailover:
		st := f.m.masterState()
		if ev.master != st.Addr {
			// About a master the proxy no longer follows: the rest of a
			// failover it has already switched for (+failover-state-
			// reconf-slaves comes after the promotion).
			f.kickNow()
			return
		}
		if channel == "+sdown" || channel == "+odown" {
			// A Sentinel's judgement that the master is down holds writes
			// only when the proxy cannot reach it either: a Sentinel cut
			// off from a healthy master must not slow every write.
			if st.Reachable && st.Role == "master" {
				f.kickNow()
				return
			}
		}
		if channel == "+selected-slave" {
			f.mu.Lock()
			f.selected, f.selectedFor = ev.addr, ev.master
			f.mu.Unlock()
		}
		f.m.hold("Sentinel " + from + " " + channel)
		f.kickNow()
	case evAbort:
		f.m.release("Sentinel " + from + " " + channel)
		f.kickNow()
	case evChanged:
		f.kickNow()
	}
}
