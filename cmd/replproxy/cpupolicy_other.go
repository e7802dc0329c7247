//go:build !linux

package main

const cpuPolicySupported = false

// setCPUPolicy has nothing to do: settings.validate refuses batch here.
func setCPUPolicy(string) error { return nil }
