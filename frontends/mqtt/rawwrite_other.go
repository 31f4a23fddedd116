//go:build !unix

package mqtt

import (
	"errors"
	"syscall"
)

// canWriteNow: without it, every write goes through the connection's writer.
const canWriteNow = false

func writeNow(syscall.RawConn, []byte) (int, error) {
	return 0, errors.New("mqtt: writing without waiting is not supported on this system")
}
