package rawio

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// Sync makes what was written to f durable, as f.Sync (fsync) does, and
// SyncData as fdatasync does (the data, and the metadata needed to read it
// back). Both wait for the disk without holding a processor.
//
// An fsync is milliseconds of waiting for the disk. Made as a system call,
// it holds its processor (P) until sysmon takes it back, which a process
// whose other system calls are raw lets sleep up to 10 ms: with one
// processor (a container given one CPU, a broker pinned to one) every
// goroutine waits for the disk as well. So the fsync goes to the kernel's
// io_uring, which runs it on a worker thread of its own, and the caller
// waits for the completion in Go's poller, as for a socket. Where the
// kernel has no io_uring or forbids it, they call fsync as os does; Via
// says which.
func Sync(f *os.File) error { return syncFile(f, false) }

// SyncData is Sync with fdatasync's guarantee.
func SyncData(f *os.File) error { return syncFile(f, true) }

// Via says how Sync and SyncData reach the disk: "io_uring", or the
// blocking system call and why.
func Via() string {
	r, err := takeRing()
	if err != nil {
		return "blocking fsync (" + err.Error() + ")"
	}
	giveRing(r)
	return "io_uring"
}

// maxRings bounds the rings, and so the fsyncs in flight at once: a store
// has its flusher and its checkpointer, and a process may hold a few
// stores. A caller beyond it waits for a ring.
const maxRings = 4

var rings struct {
	mu   sync.Mutex
	made int
	err  error // io_uring is not to be had here (unavailable)
	free chan *ring
}

// ringsOff sends every sync the blocking way (tests of that path).
var ringsOff atomic.Bool

func init() { rings.free = make(chan *ring, maxRings) }

// takeRing returns a ring to use alone, made if fewer than maxRings exist.
func takeRing() (*ring, error) {
	if ringsOff.Load() {
		return nil, errors.New("turned off")
	}
	select {
	case r := <-rings.free:
		return r, nil
	default:
	}
	rings.mu.Lock()
	if rings.err != nil {
		err := rings.err
		rings.mu.Unlock()
		return nil, err
	}
	if rings.made < maxRings {
		r, err := newRing()
		if err != nil {
			if unavailable(err) {
				rings.err = err
			}
			rings.mu.Unlock()
			return nil, err
		}
		rings.made++
		rings.mu.Unlock()
		return r, nil
	}
	rings.mu.Unlock()
	return <-rings.free, nil
}

func giveRing(r *ring) { rings.free <- r }

// unavailable tells a kernel without io_uring, or one that forbids it,
// from a failure that may pass (no memory or descriptors for a ring now).
func unavailable(err error) bool {
	return errors.Is(err, errors.ErrUnsupported) || errors.Is(err, syscall.ENOSYS) ||
		errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EINVAL)
}

func dropRing(r *ring) {
	r.close()
	rings.mu.Lock()
	rings.made--
	rings.mu.Unlock()
}

func syncFile(f *os.File, data bool) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return syncBlocking(f, data) // the error os gives
	}
	r, err := takeRing()
	if err != nil {
		return syncBlocking(f, data)
	}
	var errno syscall.Errno
	var ringErr error
	if err := raw.Control(func(fd uintptr) { errno, ringErr = r.fsync(fd, data) }); err != nil {
		giveRing(r)
		return syncBlocking(f, data)
	}
	if ringErr != nil {
		dropRing(r)
		return syncBlocking(f, data)
	}
	giveRing(r)
	switch errno {
	case 0:
		return nil
	case syscall.EINVAL, syscall.EOPNOTSUPP, syscall.ECANCELED, syscall.EINTR:
		// A kernel that does not take the request as made, or a request
		// cancelled (its submitting thread exited): the system call says
		// what the file itself makes of an fsync.
		return syncBlocking(f, data)
	}
	return &os.PathError{Op: syncOp(data), Path: f.Name(), Err: errno}
}

func syncBlocking(f *os.File, data bool) error {
	if !data || !haveFdatasync {
		return f.Sync()
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return &os.PathError{Op: syncOp(data), Path: f.Name(), Err: err}
	}
	var e error
	if err := raw.Control(func(fd uintptr) {
		for {
			if e = fdatasync(int(fd)); e != syscall.EINTR {
				return
			}
		}
	}); err != nil { // the only failure: f is closed
		return &os.PathError{Op: syncOp(data), Path: f.Name(), Err: os.ErrClosed}
	}
	if e != nil {
		return &os.PathError{Op: syncOp(data), Path: f.Name(), Err: e}
	}
	return nil
}

func syncOp(data bool) string {
	if data {
		return "fdatasync"
	}
	return "fsync"
}
