//go:build !linux

package mqtt

import (
	"errors"
	"syscall"
)

// canWaitRead: without it, a connection's reader waits for its worker
// before it reads again (mochi.ReadWaiter).
const canWaitRead = false

func waitReadable(syscall.RawConn) error {
	return errors.New("mqtt: waiting for input without reading it is not supported on this system")
}
