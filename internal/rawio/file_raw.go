//go:build linux && (amd64 || arm64)

package rawio

import (
	"syscall"
	"unsafe"
)

// rawFileWrites: WriteAt writes with raw pwrite64 here (a 64-bit offset in
// one register).
const rawFileWrites = true

func pwrite64(fd uintptr, b []byte, off int64) (int, syscall.Errno) {
	return call(syscall.SYS_PWRITE64, fd, unsafe.Pointer(&b[0]), len(b), off)
}
