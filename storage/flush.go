package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/ferrymq/ferry/internal/rawio"
)

// flushLoop fsyncs the log: when a sync append asks (group commit: every
// append waiting when a round starts shares its fsync), and at least every
// FlushInterval. Close flushes last.
func (s *Store) flushLoop() {
	s.tickLoop(s.opts.FlushInterval, s.flushKick, func() {
		if err := s.flushLog(); err != nil {
			s.logger.Error("storage: flush failed", "err", err)
		}
	})
}

// checkpointLoop writes the index checkpoint every FlushInterval, on a
// goroutine of its own: it fsyncs every index file written since the last
// one (and a directory where a file was made or removed), milliseconds that
// the log's fsync rounds, which sync appends wait for, would otherwise wait
// behind. Close writes the last one.
func (s *Store) checkpointLoop() {
	s.tickLoop(s.opts.FlushInterval, nil, func() {
		if err := s.checkpoint(); err != nil {
			s.logger.Error("storage: checkpoint failed", "err", err)
		}
	})
}

// tickLoop is the body of a Store goroutine: it calls do every interval and
// whenever kick (nil: never) fires, until Close.
func (s *Store) tickLoop(interval time.Duration, kick <-chan struct{}, do func()) {
	defer s.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-kick:
		case <-tick.C:
		case <-s.stop:
			return
		}
		do()
	}
}

// flushLog makes the log durable up to what is written now and wakes the
// appends waiting for it. The flusher, the checkpointer and Close call it,
// one at a time (flushRun).
func (s *Store) flushLog() error {
	s.flushRun.Lock()
	defer s.flushRun.Unlock()
	s.gather()
	if err := s.commit(); err != nil {
		return err
	}
	target := s.written.Load()
	s.flushMu.Lock()
	from, cuts := s.flushed, s.cuts
	s.flushMu.Unlock()
	var err error
	if target > from {
		start := time.Now()
		err = s.log.sync(from, target)
		s.recordFlush(time.Since(start))
	}
	s.flushMu.Lock()
	if err == nil && target > s.flushed && cuts == s.cuts {
		s.flushed = target
	}
	s.flushErr = err
	close(s.flushDone)
	s.flushDone = make(chan struct{})
	s.flushMu.Unlock()
	return err
}

// gather lets appends that are on their way join this round: appenders just
// woken by the last round append again within microseconds, and one fsync for
// all of them beats one for the first few and another for the rest. It
// yields the processor until about as many appends have come as in recent
// rounds, or until yielding brings nothing new; the yields are bounded.
func (s *Store) gather() {
	if s.opts.FlushMode != FlushSync {
		return
	}
	idle := 0
	for i := 0; i < 256 && idle < 8 && s.syncAppends.Load() < s.gatherWant; i++ {
		n := s.syncAppends.Load()
		runtime.Gosched()
		if s.syncAppends.Load() == n {
			idle++
		} else {
			idle = 0
		}
	}
	got := s.syncAppends.Swap(0)
	s.gatherWant = max(got, s.gatherWant-s.gatherWant/64)
}

// waitFlushed returns once the log is durable up to end.
func (s *Store) waitFlushed(ctx context.Context, end int64) error {
	s.syncAppends.Add(1)
	for {
		s.flushMu.Lock()
		flushed, done := s.flushed, s.flushDone
		s.flushMu.Unlock()
		if flushed >= end {
			return nil
		}
		select {
		case s.flushKick <- struct{}{}:
		default:
		}
		select {
		case <-done:
			s.flushMu.Lock()
			flushed, err := s.flushed, s.flushErr
			s.flushMu.Unlock()
			if flushed < end && err != nil {
				return fmt.Errorf("storage: message stored but not synced: %w", err)
			}
		case <-ctx.Done():
			return fmt.Errorf("storage: message stored, sync not confirmed: %w", ctx.Err())
		}
	}
}

// The checkpoint file says up to which log offset the indexes are durable:
// recovery rebuilds them from there. 32 bytes, rewritten in place, with a
// checksum: a torn write reads as no checkpoint, and the indexes are then
// rebuilt from the start of the log.
//
//	0 4 magic  4 4 version  8 8 log offset  16 8 queue file entries
//	24 4 number of queues  28 4 crc of bytes [0, 28)
//
// The number of queues lets recovery notice a queue directory that vanished.
const (
	checkpointMagic   = 0xFE77C0C0
	checkpointVersion = 1
	checkpointSize    = 32
)

type checkpointData struct {
	offset  int64
	perFile int64
	queues  int
}

// checkpoint makes the log and the indexes durable up to what the dispatcher
// has indexed, then records that offset. Each queue's sync writes its tail
// (the entries held in memory) before its fsync: the tail holds every entry
// up to d that is not yet in the files, since d is read after they were
// added.
func (s *Store) checkpoint() error {
	s.cutMu.RLock()
	defer s.cutMu.RUnlock()
	d := s.dispatched.Load()
	s.flushMu.Lock()
	flushed := s.flushed
	s.flushMu.Unlock()
	if flushed < d {
		if err := s.flushLog(); err != nil {
			return err
		}
	}
	qs := s.allQueues()
	for _, q := range qs {
		if err := q.sync(); err != nil {
			return err
		}
	}
	if err := s.keys.sync(); err != nil {
		return err
	}
	return writeCheckpoint(s.cp, checkpointData{offset: d, perFile: s.opts.QueueFileEntries, queues: len(qs)})
}

func openCheckpoint(dir string) (*os.File, checkpointData, bool, error) {
	f, err := os.OpenFile(filepath.Join(dir, "checkpoint"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, checkpointData{}, false, fmt.Errorf("storage: %w", err)
	}
	var b [checkpointSize]byte
	if n, _ := f.ReadAt(b[:], 0); n < checkpointSize {
		return f, checkpointData{}, false, nil
	}
	be := binary.BigEndian
	if be.Uint32(b[0:]) != checkpointMagic || be.Uint32(b[4:]) != checkpointVersion ||
		be.Uint32(b[28:]) != crc32.Checksum(b[:28], castagnoli) {
		return f, checkpointData{}, false, nil
	}
	cp := checkpointData{offset: int64(be.Uint64(b[8:])), perFile: int64(be.Uint64(b[16:])), queues: int(be.Uint32(b[24:]))}
	return f, cp, cp.offset >= 0, nil
}

func writeCheckpoint(f *os.File, cp checkpointData) error {
	var b [checkpointSize]byte
	be := binary.BigEndian
	be.PutUint32(b[0:], checkpointMagic)
	be.PutUint32(b[4:], checkpointVersion)
	be.PutUint64(b[8:], uint64(cp.offset))
	be.PutUint64(b[16:], uint64(cp.perFile))
	be.PutUint32(b[24:], uint32(cp.queues))
	be.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	if _, err := f.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("storage: write checkpoint: %w", err)
	}
	if err := rawio.SyncData(f); err != nil {
		return fmt.Errorf("storage: sync checkpoint: %w", err)
	}
	return nil
}
