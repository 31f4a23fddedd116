//go:build !linux

package rawio

import "syscall"

// Supported: this system has no writes without waiting; callers send every
// byte through a writer that may wait.
const Supported = false

// WriteNow writes nothing here (Supported is false).
func WriteNow(syscall.RawConn, []byte) (int, error) { return 0, nil }

// Writer is unused here (Supported is false).
type Writer struct{}

// Writev writes nothing here (Supported is false).
func (*Writer) Writev(syscall.RawConn, [][]byte) (int, int, error) { return 0, 0, nil }

// Read is not to be used here (Supported is false).
func Read(syscall.RawConn, []byte) (int, error) { return 0, syscall.ENOTSUP }
