package topology

import "errors"

var (
	// ErrConfig: the Config cannot work.
	ErrConfig = errors.New("topology: bad config")
	// ErrNoMaster: no master could be found (every Sentinel down, or none
	// named a node that answers as a master).
	ErrNoMaster = errors.New("topology: no master found")

	errPredecessor = errors.New("topology: the master the current one was promoted from")
)
