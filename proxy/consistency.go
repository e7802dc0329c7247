package proxy

import "fmt"

// consistency is a read consistency mode (DESIGN.md, "Consistency model").
type consistency uint8

const (
	consistencyCausal consistency = iota
	consistencyStrong
	consistencyLinearizable
	consistencyBounded
	consistencyEventual
)

var consistencyNames = [...]string{"causal", "strong", "linearizable", "bounded", "eventual"}

func (c consistency) String() string { return consistencyNames[c] }

func parseConsistency(name string) (consistency, error) {
	for i, n := range consistencyNames {
		if n == name {
			return consistency(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown consistency %q (want strong, linearizable, causal, bounded or eventual)", ErrProxyBadConfig, name)
}
