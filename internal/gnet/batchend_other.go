// replproxy's patch (see README.md at the module root).

//go:build darwin || dragonfly || freebsd || netbsd || openbsd || windows || (linux && poll_opt)

package gnet

// BatchEndSupported: only the default epoll poller is patched; here
// BatchEndHandler.OnBatchEnd is never called.
const BatchEndSupported = false

func setBatchEnd(*eventloop) {}
