package poll

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller is one epoll instance served by a few goroutines (runners).
type Poller struct{ l *loop }

// events is what a socket is registered for while ready may be called.
const events = unix.EPOLLIN | unix.EPOLLRDHUP

// batch is the most ready sockets a runner takes at once: the others are
// left to the next runner, so that a burst of many is shared by as many
// goroutines as are free, as the runtime shares runnable goroutines.
const batch = 16

// New starts an epoll instance and n goroutines (at least 1) that serve it.
func New(n int) (*Poller, error) {
	l, err := newLoop()
	if err != nil {
		return nil, err
	}
	for range max(n, 1) {
		r := &runner{l: l, evs: make([]unix.EpollEvent, batch)}
		r.waitFn = r.take
		l.running.Add(1)
		go r.run()
	}
	return &Poller{l: l}, nil
}

// Close ends the runners. Sockets still added are no longer waited on;
// their ready is not called again once Close has returned.
func (p *Poller) Close() error {
	p.l.close()
	return nil
}

// Add registers the socket of raw (a TCP or Unix connection) with a loop,
// which calls ready each time it has input, until Remove.
func (p *Poller) Add(raw syscall.RawConn, ready func()) (*Handle, error) {
	l := p.l
	h := &Handle{l: l, ready: ready}
	h.ctl = func(op int, ev uint32) error {
		err := net.ErrClosed
		cerr := raw.Control(func(fd uintptr) {
			e := unix.EpollEvent{Events: ev, Fd: int32(h.id), Pad: int32(h.id >> 32)}
			l.mu.Lock()
			defer l.mu.Unlock()
			if !l.closed {
				err = unix.EpollCtl(l.epfd, op, int(fd), &e)
			}
		})
		if cerr != nil {
			return cerr // closed: the kernel dropped the registration with the socket
		}
		return err
	}
	l.mu.Lock()
	l.lastID++
	h.id = l.lastID
	l.handles[h.id] = h
	l.mu.Unlock()
	if err := h.ctl(unix.EPOLL_CTL_ADD, events); err != nil {
		l.forget(h.id)
		return nil, fmt.Errorf("poll: watch a socket: %w", err)
	}
	return h, nil
}

// ctlFunc changes a socket's registration: EPOLL_CTL_MOD or _DEL, and the
// events.
type ctlFunc func(op int, events uint32) error

// Pause stops the calls to ready until Resume. It is called from ready.
func (h *Handle) Pause() {
	h.paused = true
	_ = h.ctl(unix.EPOLL_CTL_MOD, 0)
}

// Resume undoes Pause; after Remove it does nothing.
func (h *Handle) Resume() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.removed || !h.paused {
		return
	}
	h.paused = false
	_ = h.ctl(unix.EPOLL_CTL_MOD, events)
}

// Remove ends the wait on the socket: it waits for a call of ready under
// way, and ready is not called again.
func (h *Handle) Remove() {
	h.mu.Lock()
	if !h.removed {
		h.removed = true
		_ = h.ctl(unix.EPOLL_CTL_DEL, 0)
	}
	h.mu.Unlock()
	h.l.forget(h.id)
}

// loop is the epoll instance.
type loop struct {
	epfd int
	file *os.File // epfd, waited on in Go's poller
	raw  syscall.RawConn

	mu      sync.Mutex
	handles map[uint64]*Handle
	lastID  uint64
	closed  bool // epfd is closed or closing: no epoll_ctl on it

	running sync.WaitGroup // the runners
}

func newLoop() (*loop, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("poll: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil { // so that os.NewFile puts it in Go's poller
		unix.Close(fd)
		return nil, fmt.Errorf("poll: epoll descriptor: %w", err)
	}
	l := &loop{epfd: fd, file: os.NewFile(uintptr(fd), "epoll"), handles: make(map[uint64]*Handle)}
	if l.raw, err = l.file.SyscallConn(); err != nil {
		l.file.Close()
		return nil, fmt.Errorf("poll: epoll descriptor: %w", err)
	}
	return l, nil
}

// runner is a goroutine serving the loop. Go's poller lets one goroutine
// at a time wait on the epoll descriptor; the others wait for it to take
// its batch, then take the next.
type runner struct {
	l      *loop
	evs    []unix.EpollEvent // what the last epoll_wait returned
	n      int
	err    error
	waitFn func(fd uintptr) bool
}

// take takes ready sockets without waiting; false (wait in Go's poller for
// the epoll descriptor to be readable, then call again) while there are
// none.
//
// epoll_pwait is made raw (as rawio's calls, and for the same reason): it
// returns at once, and a system call the runtime is told of wakes its
// monitor thread when the process was idle, which it is between bursts
// thousands of times a second.
func (r *runner) take(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&r.evs[0])), uintptr(len(r.evs)), 0, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			r.n, r.err = 0, e
			return true
		case n == 0:
			return false
		}
		r.n, r.err = int(n), nil
		return true
	}
}

// run serves the loop's sockets until close.
func (r *runner) run() {
	defer r.l.running.Done()
	for {
		if err := r.l.raw.Read(r.waitFn); err != nil { // closed
			return
		}
		if r.err != nil {
			return // the epoll descriptor failed: cannot happen while it is open
		}
		for _, ev := range r.evs[:r.n] {
			if h := r.l.lookup(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32); h != nil {
				h.serve()
			}
		}
	}
}

// serve calls ready unless the handle is paused or removed.
func (h *Handle) serve() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.paused && !h.removed {
		h.ready()
	}
}

func (l *loop) lookup(id uint64) *Handle {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.handles[id]
}

func (l *loop) forget(id uint64) {
	l.mu.Lock()
	delete(l.handles, id)
	l.mu.Unlock()
}

// close ends the runners and waits for them, which may finish a batch
// first.
func (l *loop) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.file.Close()
	l.running.Wait()
}
