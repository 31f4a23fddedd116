//go:build !(linux && (amd64 || arm64))

package rawio

import "syscall"

// rawFileWrites: WriteAt always takes the blocking path here.
const rawFileWrites = false

func pwrite64(uintptr, []byte, int64) (int, syscall.Errno) { return 0, syscall.ENOSYS }
