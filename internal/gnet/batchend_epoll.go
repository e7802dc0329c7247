// replproxy's patch (see README.md at the module root).

//go:build linux && !poll_opt

package gnet

// BatchEndSupported: the default epoll poller calls BatchEndHandler.
const BatchEndSupported = true

func setBatchEnd(el *eventloop) {
	if h, ok := el.eventHandler.(BatchEndHandler); ok {
		el.poller.SetBatchEnd(func() { h.OnBatchEnd(el) }, h.NoYield())
	}
}
