//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// --cpu-policy batch puts every thread under SCHED_BATCH, the ones there
// when it runs and the ones the runtime starts after (cloned, they
// inherit it). Run in a child process: the policy would otherwise stay on
// the test binary's threads for every later test.
func TestCPUPolicyBatchCoversEveryThread(t *testing.T) {
	if os.Getenv("REPLPROXY_CPU_POLICY_CHILD") == "1" {
		cpuPolicyChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCPUPolicyBatchCoversEveryThread$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REPLPROXY_CPU_POLICY_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "every thread SCHED_BATCH") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]))
}

// cpuPolicyChild sets the policy, makes the runtime start more threads (a
// goroutine locked to its thread and parked holds it, so the next needs a
// new one), and checks every thread.
func cpuPolicyChild() {
	if p := policies(); p[unix.SCHED_BATCH] != 0 {
		fmt.Printf("SCHED_BATCH before setCPUPolicy: %v\n", p)
		os.Exit(1)
	}
	if err := setCPUPolicy("batch"); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	before := threads()
	park := make(chan struct{})
	started := make(chan struct{})
	for range 8 {
		go func() {
			runtime.LockOSThread()
			started <- struct{}{}
			<-park
		}()
		<-started
	}
	// One listing for both counts: the runtime may start a thread at any
	// moment.
	p := policies()
	after := 0
	for _, n := range p {
		after += n
	}
	// An idle thread of the runtime may take one of them: most, not all 8,
	// are new.
	if after < before+4 || p[unix.SCHED_BATCH] != after {
		fmt.Printf("threads %d before, %d after 8 locked goroutines; policies %v\n", before, after, p)
		os.Exit(1)
	}
	fmt.Printf("every thread SCHED_BATCH: %d set at once, %d started after\n", before, after-before)
	close(park)
	os.Exit(0)
}

func threads() int {
	entries, _ := os.ReadDir("/proc/self/task")
	return len(entries)
}

// policies counts the process's threads by scheduling policy.
func policies() map[uint32]int {
	m := map[uint32]int{}
	entries, _ := os.ReadDir("/proc/self/task")
	for _, e := range entries {
		tid, _ := strconv.Atoi(e.Name())
		if attr, err := unix.SchedGetAttr(tid, 0); err == nil {
			m[attr.Policy]++
		}
	}
	return m
}
