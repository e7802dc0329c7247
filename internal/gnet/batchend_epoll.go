// replproxy's patch (see README.md at the module root).

//go:build linux && !poll_opt

package gnet

import errorx "github.com/panjf2000/gnet/v2/pkg/errors"

// BatchEndSupported: the default epoll poller calls BatchEndHandler.
const BatchEndSupported = true

func setBatchEnd(el *eventloop) {
	if h, ok := el.eventHandler.(BatchEndHandler); ok {
		el.poller.SetBatchEnd(func() { h.OnBatchEnd(el) }, h.NoYield())
	}
}

// WakeBatchEnd makes el run its BatchEndHandler.OnBatchEnd soon, callable
// from any goroutine: the eventfd write of Execute without its task, and
// without its two allocations. The handler must itself know what it was
// woken for (an atomic flag it set before the call).
func WakeBatchEnd(el EventLoop) error {
	l, ok := el.(*eventloop)
	if !ok {
		return errorx.ErrUnsupportedOp
	}
	return l.poller.Wake()
}
