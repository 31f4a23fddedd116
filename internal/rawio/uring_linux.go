//go:build linux && (amd64 || arm64)

package rawio

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A ring is an io_uring that runs one fsync at a time: the kernel does it
// on a worker thread of its own, and the caller waits for the completion
// on an eventfd in Go's poller, as for a socket, holding no processor. The
// ring's memory is shared with the kernel; its head and tail counters are
// read and written atomically (the kernel's acquire and release).
type ring struct {
	fd     int
	events *os.File // the eventfd the kernel signals on each completion

	sqMem, cqMem, sqeMem []byte

	sqTail, sqMask *uint32
	sqArray        unsafe.Pointer // uint32 per entry: the index of its sqe
	cqHead, cqTail *uint32
	cqMask         *uint32
	cqes           unsafe.Pointer
	seq            uint64  // user data of the last request
	count          [8]byte // an eventfd read's
}

// The kernel's constants and layouts (include/uapi/linux/io_uring.h).
const (
	ioringOffSQRing = 0
	ioringOffCQRing = 0x8000000
	ioringOffSQEs   = 0x10000000

	ioringFeatSingleMmap  = 1 << 0
	ioringRegisterEventfd = 4
	ioringOpFsync         = 3
	ioringFsyncDatasync   = 1 << 0
	iosqeAsync            = 1 << 4 // straight to a worker: an fsync never completes without waiting

	sqeSize = 64
	cqeSize = 16
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// newRing sets up a ring of two entries (one is ever in use) with its
// eventfd. It fails where the kernel has no io_uring or forbids it (a
// seccomp profile, kernel.io_uring_disabled).
func newRing() (*ring, error) {
	var p uringParams
	fd, _, e := syscall.Syscall(unix.SYS_IO_URING_SETUP, 2, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	r := &ring{fd: int(fd)}
	if err := r.mapRings(&p); err != nil {
		r.close()
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		r.close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	r.events = os.NewFile(uintptr(efd), "io_uring events") // non-blocking: read in the poller
	e32 := int32(efd)
	if _, _, e := syscall.Syscall6(unix.SYS_IO_URING_REGISTER, fd, ioringRegisterEventfd, uintptr(unsafe.Pointer(&e32)), 1, 0, 0); e != 0 {
		r.close()
		return nil, fmt.Errorf("io_uring_register eventfd: %w", e)
	}
	return r, nil
}

func (r *ring) mapRings(p *uringParams) error {
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*cqeSize)
	single := p.features&ioringFeatSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	flags := unix.MAP_SHARED | unix.MAP_POPULATE
	prot := unix.PROT_READ | unix.PROT_WRITE
	if r.sqMem, err = unix.Mmap(r.fd, ioringOffSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("io_uring mmap: %w", err)
	}
	r.cqMem = r.sqMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, ioringOffCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("io_uring mmap: %w", err)
		}
	}
	if r.sqeMem, err = unix.Mmap(r.fd, ioringOffSQEs, int(p.sqEntries)*sqeSize, prot, flags); err != nil {
		return fmt.Errorf("io_uring mmap: %w", err)
	}
	at := func(mem []byte, off uint32) unsafe.Pointer { return unsafe.Pointer(&mem[off]) }
	r.sqTail = (*uint32)(at(r.sqMem, p.sqOff.tail))
	r.sqMask = (*uint32)(at(r.sqMem, p.sqOff.ringMask))
	r.sqArray = at(r.sqMem, p.sqOff.array)
	r.cqHead = (*uint32)(at(r.cqMem, p.cqOff.head))
	r.cqTail = (*uint32)(at(r.cqMem, p.cqOff.tail))
	r.cqMask = (*uint32)(at(r.cqMem, p.cqOff.ringMask))
	r.cqes = at(r.cqMem, p.cqOff.cqes)
	return nil
}

func (r *ring) close() {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.cqMem != nil && unsafe.SliceData(r.cqMem) != unsafe.SliceData(r.sqMem) {
		unix.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		unix.Munmap(r.sqMem)
	}
	if r.events != nil {
		r.events.Close()
	}
	syscall.Close(r.fd)
}

// errRingBroken: the ring answered in a way it should not; the caller
// syncs the blocking way and drops the ring.
var errRingBroken = errors.New("io_uring: ring out of step")

// fsync submits an fsync of fd (data: fdatasync) and waits for it in the
// poller. The caller holds fd open until it returns: the kernel looks the
// descriptor up when its worker runs the request.
func (r *ring) fsync(fd uintptr, data bool) (syscall.Errno, error) {
	tail := atomic.LoadUint32(r.sqTail) // only this goroutine writes it
	idx := tail & *r.sqMask
	sqe := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(&r.sqeMem[0]), uintptr(idx)*sqeSize)), sqeSize)
	clear(sqe)
	sqe[0] = ioringOpFsync
	sqe[1] = iosqeAsync
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
	if data {
		*(*uint32)(unsafe.Pointer(&sqe[28])) = ioringFsyncDatasync
	}
	r.seq++
	*(*uint64)(unsafe.Pointer(&sqe[32])) = r.seq
	*(*uint32)(unsafe.Add(r.sqArray, uintptr(idx)*4)) = idx
	atomic.StoreUint32(r.sqTail, tail+1)
	for {
		// Submitting only queues the request for a worker (iosqeAsync):
		// a raw call, which does not wake sysmon.
		n, _, e := syscall.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 0, 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 || n != 1 {
			return 0, fmt.Errorf("io_uring_enter: %d submitted, %w", n, e)
		}
		break
	}
	for {
		head := atomic.LoadUint32(r.cqHead)
		if head != atomic.LoadUint32(r.cqTail) {
			cqe := unsafe.Add(r.cqes, uintptr(head&*r.cqMask)*cqeSize)
			user, res := *(*uint64)(cqe), *(*int32)(unsafe.Add(cqe, 8))
			atomic.StoreUint32(r.cqHead, head+1)
			if user != r.seq {
				return 0, errRingBroken
			}
			if res < 0 {
				return syscall.Errno(-res), nil
			}
			return 0, nil
		}
		if _, err := r.events.Read(r.count[:]); err != nil { // parks in the poller
			return 0, fmt.Errorf("io_uring eventfd: %w", err)
		}
	}
}
