package rawio

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// slowWrite is how long a raw file write may take before the writes after
// it go through the blocking path. A write is timed by the clock, so the
// time counts the kernel running other threads on this one's CPU: on a
// busy machine 1 ms was passed a few times a second by writes that never
// slept. 10 ms is as long as the kernel already keeps a thread that holds
// a processor off its CPU on such a machine, and shorter than a pause of
// its dirty-page throttling under sustained writes. A variable for tests.
var slowWrite = 10 * time.Millisecond

// blockingFor is how long writes go through the blocking path after a
// slow one.
const blockingFor = 10 * time.Second

var (
	epoch = time.Now() // monotonic clock readings are time.Since(epoch)
	// blockingUntil: until then (a reading), writes take the blocking path.
	// Throttling and a disk that must be read are the machine's, not one
	// file's, so one slow write sends every file's writes there.
	blockingUntil atomic.Int64
)

// WriteAt writes all of p at off of f, and fails as f.WriteAt does (an
// *os.PathError).
func WriteAt(f *os.File, p []byte, off int64) (int, error) {
	start := time.Since(epoch)
	if !rawFileWrites || int64(start) < blockingUntil.Load() {
		return f.WriteAt(p, off)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	w := pwrites.Get().(*pwrite)
	w.p, w.off, w.n, w.err = p, off, 0, nil
	err = raw.Write(w.fn) // holds f open while it writes
	n, e := w.n, w.err
	w.p, w.err = nil, nil
	pwrites.Put(w)
	if err != nil {
		return f.WriteAt(p, off) // the error f gives once closed
	}
	if took := time.Since(epoch) - start; took > slowWrite {
		blockingUntil.Store(int64(start + took + blockingFor))
	}
	if e != nil {
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: e}
	}
	return n, nil
}

// pwrite is one raw WriteAt, pooled with its function bound once (see op).
type pwrite struct {
	p   []byte
	off int64
	n   int
	err error
	fn  func(fd uintptr) bool
}

var pwrites = sync.Pool{New: func() any {
	w := new(pwrite)
	w.fn = w.write
	return w
}}

func (w *pwrite) write(fd uintptr) bool {
	for w.n < len(w.p) {
		b := w.p[w.n:]
		k, e := pwrite64(fd, b, w.off+int64(w.n))
		if e != 0 {
			w.err = e
			break
		}
		if k == 0 {
			w.err = syscall.EIO // a regular file took nothing and said nothing
			break
		}
		w.n += k
	}
	return true
}
