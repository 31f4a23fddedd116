package rawio

import (
	"sync"
	"syscall"
	"unsafe"
)

// Supported: WriteNow and Writev write on this system.
const Supported = true

// maxIovecs is the most segments one writev takes (Linux's IOV_MAX).
const maxIovecs = 1024

// WriteNow writes p to raw's socket for as long as it takes bytes without
// waiting, and returns how many it took.
func WriteNow(raw syscall.RawConn, p []byte) (int, error) { return run(raw, p, false) }

// Read reads into p (not empty) from raw's socket, waiting in Go's poller
// while it has nothing to read. 0 bytes and no error is the end of the
// stream; an error of the socket is a syscall.Errno, and the connection's
// deadline and closing give the errors net.Conn's Read gives.
func Read(raw syscall.RawConn, p []byte) (int, error) { return run(raw, p, true) }

// run is one WriteNow or Read.
func run(raw syscall.RawConn, p []byte, read bool) (int, error) {
	op := ops.Get().(*op)
	op.p, op.n, op.err = p, 0, nil
	var err error
	if read {
		err = raw.Read(op.readFn)
	} else {
		err = raw.Write(op.writeFn)
	}
	n, oerr := op.n, op.err
	op.p = nil
	ops.Put(op)
	if err == nil {
		err = oerr
	}
	return n, err
}

// op is one WriteNow or Read. RawConn.Write and Read take a function, and
// a closure made per call escaped, allocations on every write and read of
// every connection: the functions are the op's methods, bound once, and
// ops are pooled.
type op struct {
	p       []byte
	n       int
	err     error
	readFn  func(fd uintptr) bool // read
	writeFn func(fd uintptr) bool // write
}

var ops = sync.Pool{New: func() any {
	op := new(op)
	op.readFn, op.writeFn = op.read, op.write
	return op
}}

// call makes the raw system call trap(fd, p, n, off) (read, write and
// writev, which take no offset; pwrite64), again when a signal interrupted
// it.
func call(trap, fd uintptr, p unsafe.Pointer, n int, off int64) (int, syscall.Errno) {
	for {
		k, _, e := syscall.RawSyscall6(trap, fd, uintptr(p), uintptr(n), uintptr(off), 0, 0)
		if e != syscall.EINTR {
			return int(k), e
		}
	}
}

// failure is e as an error: nil for EAGAIN (the socket takes or has no
// more now), which ends a call's loop as a failure does.
func failure(e syscall.Errno) error {
	if e == syscall.EAGAIN {
		return nil
	}
	return e
}

func (op *op) write(fd uintptr) bool {
	for op.n < len(op.p) {
		b := op.p[op.n:]
		k, e := call(syscall.SYS_WRITE, fd, unsafe.Pointer(&b[0]), len(b), 0)
		if e != 0 {
			op.err = failure(e)
			break
		}
		op.n += k
	}
	return true // never wait here: the caller queues what is left
}

// Writer is scratch space for Writev; the zero value is ready. One
// goroutine uses it at a time.
type Writer struct {
	v []syscall.Iovec
	// The state of one Writev, for fn (writev, bound once: see op).
	segs   [][]byte
	i, off int
	err    error
	fn     func(fd uintptr) bool
}

// Writev writes segs to raw's socket with writev for as long as it takes
// bytes without waiting. It returns where the unwritten bytes start:
// segment i, byte off (i == len(segs) when all were written).
func (w *Writer) Writev(raw syscall.RawConn, segs [][]byte) (i, off int, err error) {
	if w.fn == nil {
		w.fn = w.writev
	}
	w.segs, w.i, w.off, w.err = segs, 0, 0, nil
	err = raw.Write(w.fn)
	i, off = w.i, w.off
	if err == nil {
		err = w.err
	}
	w.segs, w.err = nil, nil
	return i, off, err
}

func (w *Writer) writev(fd uintptr) bool {
	segs := w.segs
	for w.i < len(segs) {
		v := w.v[:0]
		for j := w.i; j < len(segs) && len(v) < maxIovecs; j++ {
			s := segs[j]
			if j == w.i {
				s = s[w.off:]
			}
			if len(s) == 0 {
				continue
			}
			v = append(v, syscall.Iovec{Base: &s[0]})
			v[len(v)-1].SetLen(len(s))
		}
		w.v = v
		if len(v) == 0 {
			w.i, w.off = len(segs), 0
			break
		}
		n, e := call(syscall.SYS_WRITEV, fd, unsafe.Pointer(&v[0]), len(v), 0)
		if e != 0 {
			w.err = failure(e)
			break
		}
		for k := n; k > 0 || w.i < len(segs) && len(segs[w.i]) == w.off; {
			left := len(segs[w.i]) - w.off
			if k < left {
				w.off += k
				break
			}
			k -= left
			w.i, w.off = w.i+1, 0
		}
	}
	clear(w.v)
	return true // never wait here: the caller copies or queues what is left
}

// read reads once; false (wait in the poller, then call again) while the
// socket has nothing.
func (op *op) read(fd uintptr) bool {
	k, e := call(syscall.SYS_READ, fd, unsafe.Pointer(&op.p[0]), len(op.p), 0)
	switch e {
	case syscall.EAGAIN:
		return false
	case 0:
		op.n = k
	default:
		op.err = e
	}
	return true
}
