package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferrymq/ferry/internal/atomicfile"
	"github.com/ferrymq/ferry/internal/rawio"
)

// segment is one commit-log file: a fixed capacity whose disk space is
// allocated ahead of the writer in chunks, so that a full disk is refused at
// append time. The committer writes it with pwrite; readers copy records out
// of a read-only mapping of the whole capacity, under mu.RLock so that close
// (retention) cannot unmap under them. The mapping is read-only on purpose:
// the kernel cleans dirty pages of a writable shared mapping one page at a
// time with a TLB shootdown on every CPU, which cost more than the copy.
type segment struct {
	base int64 // log offset of the segment's first byte
	path string
	f    *os.File
	data []byte // the mapping, len = capacity until close
	cap  int64  // capacity in bytes

	mu     sync.RWMutex // readers hold RLock while touching data; close takes Lock
	closed bool

	allocated atomic.Int64 // bytes of the file allocated on disk; grown by the writer
	chunk     int64
}

// segmentName is the file name of the segment starting at base: 20 digits,
// so that names sort as offsets.
func segmentName(base int64) string { return fmt.Sprintf("%020d", base) }

func parseSegmentName(name string) (int64, bool) {
	if len(name) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(name, 10, 64)
	return n, err == nil && n >= 0
}

// openSegment opens or creates the segment file at base with the given
// capacity. An existing file keeps its size; a new one is empty until ensure.
func openSegment(dir string, base, capacity, chunk int64) (*segment, error) {
	path := filepath.Join(dir, segmentName(base))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: open segment: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("storage: stat segment: %w", err)
	}
	if st.Size() > capacity {
		capacity = st.Size()
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(capacity), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("storage: map segment %s: %w", path, err)
	}
	seg := &segment{base: base, path: path, f: f, data: data, cap: capacity, chunk: chunk}
	seg.allocated.Store(st.Size())
	return seg, nil
}

// readable returns the segment's bytes from rel up to written (a log offset)
// and never past what is allocated on disk: touching the mapping beyond the
// file's end would fault. Caller holds mu.RLock.
func (s *segment) readable(rel, written int64) []byte {
	end := min(written-s.base, s.allocated.Load())
	if rel >= end {
		return nil
	}
	return s.data[rel:end]
}

// end is the log offset just past the segment's capacity.
func (s *segment) end() int64 { return s.base + s.cap }

// ensure allocates disk space so that bytes up to rel (relative to base)
// can be written, rounded up to a chunk. Writer only (Store.mu held).
// Reading the mapping past the allocated end would fault; and a full disk
// must refuse the append, not fail the write after the append returned.
func (s *segment) ensure(rel int64) error {
	have := s.allocated.Load()
	if rel <= have {
		return nil
	}
	// A whole chunk, or, as the disk fills, halves of it down to the
	// pages the record needs: a disk with room for the record stores it.
	need := min(s.cap, roundUp(rel, minChunk))
	want := min(s.cap, roundUp(rel, s.chunk))
	for {
		err := s.allocate(have, want)
		full := errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
		switch {
		case err == nil:
			s.allocated.Store(want)
			return nil
		case full && want > need:
			smaller := max(need, roundUp(have+(want-have)/2, minChunk))
			if smaller >= want {
				smaller = need
			}
			want = smaller
		case full:
			return fmt.Errorf("%w: cannot allocate %d bytes for %s: %v", ErrDiskFull, want-have, s.path, err)
		default:
			return fmt.Errorf("storage: allocate %s: %w", s.path, err)
		}
	}
}

// minChunk is the least space ensure reserves at a time: a few pages.
const minChunk = 64 << 10

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// allocate gives the segment's file disk space from have to want.
func (s *segment) allocate(have, want int64) error {
	err := unix.Fallocate(int(s.f.Fd()), 0, have, want-have)
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = writeZeros(s.f, have, want)
	}
	return err
}

// writeZeros extends f to size by writing zeros, for file systems without fallocate.
func writeZeros(f *os.File, from, to int64) error {
	zeros := make([]byte, 1<<20)
	for from < to {
		n := min(int64(len(zeros)), to-from)
		if _, err := f.WriteAt(zeros[:n], from); err != nil {
			return err
		}
		from += n
	}
	return nil
}

// sync makes everything written to the segment durable. A segment closed
// by retention has nothing left to make durable.
func (s *segment) sync() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	if err := rawio.SyncData(s.f); err != nil {
		return fmt.Errorf("storage: sync %s: %w", s.path, err)
	}
	return nil
}

// close unmaps and closes the file, once no reader holds it.
func (s *segment) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := unix.Munmap(s.data)
	s.data = nil
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir fsyncs a directory so that file creations and removals in it last.
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
