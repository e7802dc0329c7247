//go:build race

package proxy

// raceEnabled: the race detector is on; allocation counts mean nothing.
const raceEnabled = true
