// replproxy's patch (see README.md at the module root).

package gnet

// BatchEndHandler is an EventHandler that also wants OnBatchEnd called on
// each event loop's goroutine after every batch of I/O events and queued
// tasks, before the loop polls again, where BatchEndSupported. Where it is
// not, OnBatchEnd is never called: a handler must then do its end-of-batch
// work some other way (EventLoop.Execute). NoYield makes the loop block in
// epoll_wait right after a batch, without a zero-timeout poll and a
// runtime.Gosched first.
type BatchEndHandler interface {
	EventHandler
	OnBatchEnd(el EventLoop)
	NoYield() bool
}
