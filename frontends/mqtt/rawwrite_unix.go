//go:build unix

package mqtt

import "syscall"

// canWriteNow: writeNow writes to a socket without waiting.
const canWriteNow = true

// writeNow writes p to raw's socket for as long as it takes bytes without
// waiting, and returns how many it took.
func writeNow(raw syscall.RawConn, p []byte) (int, error) {
	n := 0
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, e := syscall.Write(int(fd), p[n:])
			if e == syscall.EINTR {
				continue
			}
			if e != nil {
				if e != syscall.EAGAIN {
					werr = e
				}
				break
			}
			n += k
		}
		return true // never wait here: the caller queues what is left
	})
	if err == nil {
		err = werr
	}
	return n, err
}
