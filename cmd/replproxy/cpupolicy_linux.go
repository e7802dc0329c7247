//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// cpuPolicySupported: --cpu-policy batch can be applied here.
const cpuPolicySupported = true

// setCPUPolicy puts every thread of the process under the scheduling
// policy named by --cpu-policy: "normal" leaves them as they are, "batch"
// is SCHED_BATCH. A thread the Go runtime starts later is cloned from one
// of these and inherits it; one started while they are being set shows up
// in the next listing of /proc/self/task, so the listing is repeated until
// it holds no thread not yet set.
//
// Why batch: a proxy sharing a CPU with busy clients preempts a client
// whenever the client's write wakes it, and then reads a few requests at a
// time; under SCHED_BATCH it does not preempt on wake-up, the client
// finishes its turn, and the proxy reads all of it at once (README.md,
// "Where the proxy's time goes"). Setting SCHED_BATCH needs no privilege.
func setCPUPolicy(policy string) error {
	if policy != "batch" {
		return nil
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH}
	done := map[int]bool{}
	for range 100 {
		entries, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("--cpu-policy batch: %w", err)
		}
		fresh := false
		for _, e := range entries {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh, done[tid] = true, true
			// ESRCH: the thread exited since the listing.
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("--cpu-policy batch: sched_setattr(thread %d, SCHED_BATCH): %w", tid, err)
			}
		}
		if !fresh {
			return nil
		}
	}
	return errors.New("--cpu-policy batch: threads kept starting while their policy was set")
}
