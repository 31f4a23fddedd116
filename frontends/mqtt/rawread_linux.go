package mqtt

import (
	"syscall"
	"unsafe"
)

// canWaitRead: waitReadable waits for a socket's input without reading it.
const canWaitRead = true

// waitReadable waits until raw's socket has input, is at its end or has
// failed, without consuming anything, or until its read deadline. The poller
// forgets, when a wait starts, a readiness that came before it, so a peek
// first looks for input that is already there.
func waitReadable(raw syscall.RawConn) error {
	first := true
	var b [1]byte
	return raw.Read(func(fd uintptr) bool {
		if !first {
			return true // woken by the poller: a Read will tell what came
		}
		first = false
		for {
			_, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
				syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // nothing yet: wait for the poller
			}
			return true // input, the end, or an error for the Read to return
		}
	})
}
