package storage

import (
	"fmt"
	"runtime"
	"time"

	"github.com/ferrymq/ferry/internal/rawio"
)

// Appends are encoded into write buffers in memory, under the write lock;
// the committer writes them to their segment files with pwrite, in order,
// and only then publishes the new end of the log (written) to the
// dispatcher, the readers and the appends waiting for it. An append waits
// for that write (async) or for the fsync after it (sync); appends that
// arrive while the committer writes share its next write. An append also
// waits for room when more than maxPending bytes are not yet committed.
const (
	bufSize    = 1 << 20
	maxPending = 16 << 20
	maxSpare   = maxPending / bufSize
)

// writeBuf is encoded records for one segment, starting at log offset off.
type writeBuf struct {
	seg  *segment
	off  int64
	data []byte
	// sealed: the buffer ends with the blank that seals seg, so once it is
	// written the log goes on at seg's end.
	sealed bool
}

// waitRoomLocked waits until the write buffers have room (less than
// maxPending bytes not yet committed) and returns why an append cannot go
// on: the store closed, Truncate runs, or a write failed. Caller holds mu.
func (s *Store) waitRoomLocked() error {
	for s.pending >= maxPending && !s.closed && !s.cutting && s.commitErr == nil {
		s.kickCommit()
		s.room.Wait()
	}
	switch {
	case s.closed:
		return ErrClosed
	case s.cutting:
		return ErrTruncating
	}
	return s.commitErr
}

// bufFor returns room for n bytes at log offset pos of seg in the current
// write buffer, starting a new buffer when it cannot take them. Caller
// holds mu.
func (s *Store) bufFor(seg *segment, pos int64, n int) []byte {
	b := s.cur
	if b == nil || b.seg != seg || b.off+int64(len(b.data)) != pos || cap(b.data)-len(b.data) < n {
		s.sealCur()
		if k := len(s.spare); k > 0 && n <= bufSize {
			b, s.spare = s.spare[k-1], s.spare[:k-1]
			b.seg, b.off, b.data, b.sealed = seg, pos, b.data[:0], false
		} else {
			b = &writeBuf{seg: seg, off: pos, data: make([]byte, 0, max(bufSize, n))}
		}
		s.cur = b
	}
	start := len(b.data)
	b.data = b.data[:start+n]
	s.pending += n
	return b.data[start:]
}

// sealCur queues the current buffer for the committer. Caller holds mu.
func (s *Store) sealCur() {
	if s.cur != nil && len(s.cur.data) > 0 {
		s.queued = append(s.queued, s.cur)
	}
	s.cur = nil
}

// commitLoop commits whenever an append asks, until stop.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-s.commitKick:
		case <-retry.C:
		case <-s.stop:
			return // Close commits last
		}
		runtime.Gosched() // let appends that are on their way join this write
		s.commitMu.Lock()
		if err := s.commitUnlock(wakeHandOff); err != nil {
			s.logger.Error("storage: writing the log failed; appends are refused until it succeeds; retrying in 1s", "err", err)
			retry.Reset(time.Second)
		}
	}
}

// commit writes every buffered record to its segment file and publishes the
// new end of the log. On an error the buffers stay queued, in order, and
// appends are refused with that error until a later commit succeeds.
func (s *Store) commit() error {
	s.commitMu.Lock()
	return s.commitUnlock(wakeLater)
}

// commitUnlock is commit for a caller that holds commitMu: it releases it
// before it indexes what it wrote, so that indexing never holds up the next
// write. The indexing comes after the appends' wake-up (commitLocked), not
// before: each goroutine readied takes the head of this processor's run
// queue and pushes the one before it to the tail, so the dispatcher, readied
// last, runs next instead of behind every append of the write (the delivery
// path's longest wait with a thousand connections). A small write is
// indexed right here, with no goroutine to wake (indexInline), and wake
// says who wakes the watchers of the queues indexed.
func (s *Store) commitUnlock(wake wakeMode) error {
	wrote, err := s.commitLocked()
	s.commitMu.Unlock()
	if wrote {
		s.indexInline(wake)
	}
	return err
}

// commitLocked writes the buffered records for commitUnlock, which holds
// commitMu, and says whether it wrote any.
func (s *Store) commitLocked() (wrote bool, err error) {
	s.mu.Lock()
	s.sealCur()
	bufs := s.queued
	s.queued = nil
	s.mu.Unlock()
	if len(bufs) == 0 {
		return false, nil
	}
	done, bytes := 0, 0
	for _, b := range bufs {
		if _, err = rawio.WriteAt(b.seg.f, b.data, b.off-b.seg.base); err != nil {
			err = fmt.Errorf("storage: write %s: %w", b.seg.path, err)
			break
		}
		s.writes.Add(1)
		done++
		bytes += len(b.data)
		end := b.off + int64(len(b.data))
		if b.sealed {
			end = b.seg.end()
		}
		s.written.Store(end)
	}
	s.mu.Lock()
	if err != nil {
		s.queued = append(bufs[done:], s.queued...)
	}
	s.commitErr = err
	s.pending -= bytes
	for _, b := range bufs[:done] {
		if cap(b.data) == bufSize && len(s.spare) < maxSpare {
			b.seg, b.data = nil, b.data[:0]
			s.spare = append(s.spare, b)
		}
	}
	s.room.Broadcast()
	s.mu.Unlock()
	if done > 0 || err != nil { // appends waiting for the write learn of its failure too
		s.wakeEnd()
	}
	return done > 0, err
}
