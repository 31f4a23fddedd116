package rawsock

import (
	"syscall"
	"unsafe"
)

// Supported: WriteNow and Writev write on this system.
const Supported = true

// maxIovecs is the most segments one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

// WriteNow writes p to raw's socket for as long as it takes bytes without
// waiting, and returns how many it took.
func WriteNow(raw syscall.RawConn, p []byte) (int, error) {
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

// Writer is scratch space for Writev; the zero value is ready. One
// goroutine uses it at a time.
type Writer struct{ v []syscall.Iovec }

// Writev writes segs to raw's socket with writev for as long as it takes
// bytes without waiting. It returns where the unwritten bytes start:
// segment i, byte off (i == len(segs) when all were written).
func (w *Writer) Writev(raw syscall.RawConn, segs [][]byte) (i, off int, err error) {
	var werr error
	err = raw.Write(func(fd uintptr) bool {
		for i < len(segs) {
			v := w.v[:0]
			for j := i; j < len(segs) && len(v) < maxIovecs; j++ {
				s := segs[j]
				if j == i {
					s = s[off:]
				}
				if len(s) == 0 {
					continue
				}
				v = append(v, syscall.Iovec{Base: &s[0]})
				v[len(v)-1].SetLen(len(s))
			}
			w.v = v
			if len(v) == 0 {
				i, off = len(segs), 0
				break
			}
			n, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
			if e == syscall.EINTR {
				continue
			}
			if e != 0 {
				if e != syscall.EAGAIN {
					werr = e
				}
				break
			}
			for k := int(n); k > 0 || i < len(segs) && len(segs[i]) == off; {
				left := len(segs[i]) - off
				if k < left {
					off += k
					break
				}
				k -= left
				i, off = i+1, 0
			}
		}
		clear(w.v)
		return true // never wait here: the caller copies or queues what is left
	})
	if err == nil {
		err = werr
	}
	return i, off, err
}
