//go:build !(linux && (amd64 || arm64))

package rawio

import (
	"errors"
	"syscall"
)

// ring: no io_uring here; Sync and SyncData take the blocking path.
type ring struct{}

func newRing() (*ring, error) { return nil, errors.ErrUnsupported }

func (*ring) fsync(uintptr, bool) (syscall.Errno, error) { return 0, errors.ErrUnsupported }

func (*ring) close() {}
