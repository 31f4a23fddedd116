package remoting

import (
	"syscall"
	"unsafe"
)

// canWriteNow: writeNow writes to a socket without waiting.
const canWriteNow = true

// maxIovecs is the most segments one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

// iovecs is a writer's scratch space for writev.
type iovecs struct{ v []syscall.Iovec }

// writeNow writes segs to raw's socket for as long as it takes bytes
// without waiting, with writev. It returns where the unwritten bytes
// start: segment i, byte off (i == len(segs) when all were written).
func (w *iovecs) writeNow(raw syscall.RawConn, segs [][]byte) (i, off int, err error) {
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
		return true // never wait here: the caller copies what is left first
	})
	if err == nil {
		err = werr
	}
	return i, off, err
}
