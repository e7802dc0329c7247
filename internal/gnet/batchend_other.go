// replproxy's patch (see README.md at the module root).

//go:build darwin || dragonfly || freebsd || netbsd || openbsd || windows || (linux && poll_opt)

package gnet

import errorx "github.com/panjf2000/gnet/v2/pkg/errors"

// BatchEndSupported: only the default epoll poller is patched; here
// BatchEndHandler.OnBatchEnd is never called.
const BatchEndSupported = false

func setBatchEnd(*eventloop) {}

// WakeBatchEnd is not supported here: use EventLoop.Execute.
func WakeBatchEnd(EventLoop) error { return errorx.ErrUnsupportedOp }
