package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replproxy/replproxy/internal/redistest"
)

const startRedisTimeout = 30 * time.Second

// startScriptNode runs deploy/redis/start-redis.sh as the Compose file does
// for a replica, with the shared config at sharedConf, the node's own config
// in dir, and the placement (loopback port, dir, log) after "--".
func startScriptNode(t *testing.T, script, sharedConf, dir string, port int, args ...string) *proc {
	t.Helper()
	argv := append([]string{"sh", script}, args...)
	argv = append(argv, "--", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	p := startProc(t, "start-redis.sh", argv, dir,
		"REDIS_SHARED_CONF="+sharedConf,
		"REDIS_NODE_CONF="+filepath.Join(dir, "redis-node.conf"),
		"REDIS_SERVER="+redistest.RedisServerPath(t))
	c := redis.NewClient(&redis.Options{Addr: loopback(port)})
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(startRedisTimeout)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return p
		}
		if !p.running() {
			b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("start-redis.sh exited (%s): %v\n%s\n%s", p.exitStatus(), err, p.logTail(), b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not answer PING within %v: %v\n%s", startRedisTimeout, err, p.logTail())
		}
		time.Sleep(pollEvery)
	}
}

// TestStartRedisKeepsSentinelsRole is the bug start-redis.sh exists for: a
// replica Sentinel promoted, restarted with the Compose command that made it
// a replica, must come back as the master Sentinel made it (keeping its
// data), not as a replica of the old master, which would resync it and drop
// what it acknowledged as master.
func TestStartRedisKeepsSentinelsRole(t *testing.T) {
	p := loadCompose(t)
	replica := service(t, p, "redis-replica-1")
	script := hostPath(replica, "/usr/local/etc/redis/start-redis.sh")
	// The Compose command, with the master's address made loopback.
	cmd := []string(replica.Command)
	if len(cmd) != 5 || cmd[0] != "sh" || hostPath(replica, cmd[1]) != script || cmd[3] != "redis-master" || cmd[4] != "6379" {
		t.Fatalf("redis-replica-1 command %q: want sh start-redis.sh NAME redis-master 6379", cmd)
	}
	master := redistest.StartServer(t)

	// The shared redis.conf as the stack has it, but for where it listens
	// and keeps files (its dir /data does not exist here).
	sharedConf := filepath.Join(t.TempDir(), "redis.conf")
	var lines []string
	for _, d := range confDirectives(t, hostPath(replica, "/usr/local/etc/redis/redis.conf")) {
		if !strings.EqualFold(d[0], "dir") {
			lines = append(lines, strings.Join(d, " "))
		}
	}
	if err := os.WriteFile(sharedConf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	args := []string{cmd[2], "127.0.0.1", strconv.Itoa(master.Port())}
	node := startScriptNode(t, script, sharedConf, dir, port, args...)

	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: loopback(port)})
	defer c.Close()
	role := func() string {
		r, err := c.Do(ctx, "ROLE").Slice()
		if err != nil || len(r) == 0 {
			t.Fatalf("ROLE: %v", err)
		}
		return r[0].(string)
	}
	if got := role(); got != "slave" {
		t.Fatalf("first start: ROLE %s, want slave (a replica of the master)", got)
	}
	if v, err := c.ConfigGet(ctx, "replica-announce-ip").Result(); err != nil || v["replica-announce-ip"] != "redis-replica-1" {
		t.Fatalf("replica-announce-ip %v, %v: want the service name", v, err)
	}
	if v, err := c.ConfigGet(ctx, "appendonly").Result(); err != nil || v["appendonly"] != "yes" {
		t.Fatalf("appendonly %v, %v: want yes from redis.conf", v, err)
	}

	// What Sentinel sends to the replica it promotes.
	pipe := c.TxPipeline()
	pipe.Do(ctx, "REPLICAOF", "NO", "ONE")
	pipe.Do(ctx, "CONFIG", "REWRITE")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("REPLICAOF NO ONE + CONFIG REWRITE: %v", err)
	}
	if err := c.Set(ctx, "acknowledged-as-master", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// AOF is fsynced every second; a clean SIGTERM shutdown writes it all.
	// Redis refuses SIGTERM while it writes its first AOF after a sync
	// ("Writing initial AOF, can't exit"): wait for that to be over.
	deadline := time.Now().Add(startRedisTimeout)
	for {
		info, err := c.Info(ctx, "persistence").Result()
		if err == nil && strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("AOF rewrite still in progress after %v: %v\n%s", startRedisTimeout, err, info)
		}
		time.Sleep(pollEvery)
	}
	node.stop(t)
	if exited, err := node.wait(0); !exited || err != nil {
		t.Fatalf("the node did not shut down cleanly on SIGTERM: %v", err)
	}

	// The container restarts with the same command.
	startScriptNode(t, script, sharedConf, dir, port, args...)
	if got := role(); got != "master" {
		b, _ := os.ReadFile(filepath.Join(dir, "redis-node.conf"))
		t.Fatalf("after a restart: ROLE %s, want master (the role Sentinel gave it); node config:\n%s", got, b)
	}
	if v, err := c.Get(ctx, "acknowledged-as-master").Result(); err != nil || v != "1" {
		t.Fatalf("the write acknowledged as master is gone after the restart: %q, %v", v, err)
	}
}

func TestStartRedisUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"name", "host", "6379", "stray"}} {
		argv := append([]string{"sh", "redis/start-redis.sh"}, args...)
		p := startProc(t, "start-redis.sh usage", argv, ".", "REDIS_SERVER=/bin/true", "REDIS_NODE_CONF="+filepath.Join(t.TempDir(), "n.conf"))
		exited, err := p.wait(30 * time.Second)
		if !exited || err == nil || !strings.Contains(err.Error(), "exit status 2") {
			t.Errorf("start-redis.sh %q: %v, want exit status 2\n%s", args, err, p.logTail())
		}
	}
}
