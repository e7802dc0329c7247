//go:build !linux

package main

import "errors"

const cpuPolicySupported = false

// setCPUPolicy: only Linux has SCHED_BATCH.
func setCPUPolicy(policy string) error {
	if policy != "batch" {
		return nil
	}
	return errors.New("--cpu-policy batch: only supported on Linux")
}
