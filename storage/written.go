package storage

import (
	"context"
	"fmt"
	"runtime"
)

// waitWritten returns once the log is written up to end to its files
// (handed to the OS, so that a crash of the process no longer loses it):
// what an async append waits for. Group commit without a hand-off: a
// waiter that finds no write under way writes everything buffered itself,
// its own records and those of every append before it; the appends that
// come meanwhile wait on the channel each write closes when it publishes
// the new end (WaitEnd), and the first of them to wake writes theirs, all
// in one write.
//
// It fails when the write failed (the record is in memory only, and the
// committer retries), when the store closed before writing it, or when
// ctx ends first; the record is then stored but its write not confirmed.
func (s *Store) waitWritten(ctx context.Context, end int64) error {
	cuts := s.cutCount.Load()
	for {
		if s.written.Load() >= end {
			return nil
		}
		if s.commitMu.TryLock() {
			// Let the appends that are runnable now append and join this
			// write: without the yield each of a few processors' appenders
			// writes its own record, a write per append. Not when appends
			// already wait for a write: this one gathers them anyway, and
			// with a thousand connections the yield put the writer at the
			// end of the global run queue, behind every one of them.
			if s.writeWaiters.Load() == 0 {
				runtime.Gosched()
			}
			if err := s.writeHeld(wakeLater); err != nil {
				return err
			}
			continue
		}
		wake := s.WaitEnd(end - 1)
		if s.written.Load() >= end {
			return nil
		}
		s.writeWaiters.Add(1)
		if done := ctx.Done(); done == nil {
			<-wake // a plain receive: cheaper than a select, and most appends wait so
		} else {
			select {
			case <-wake:
			case <-done:
				s.writeWaiters.Add(-1)
				s.kickCommit() // someone must write what this append left
				return fmt.Errorf("storage: message stored, write to the log not confirmed: %w", ctx.Err())
			}
		}
		s.writeWaiters.Add(-1)
		if s.written.Load() >= end {
			return nil
		}
		// Truncate writes everything appended before it cuts: a cut since
		// this wait began means the record was written (and perhaps cut).
		if s.cutCount.Load() != cuts {
			return nil
		}
		s.mu.Lock()
		err := s.commitErr
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("storage: message stored in memory, not yet written to the log: %w", err)
		}
		if s.isClosed() {
			return fmt.Errorf("storage: message stored in memory, not written before the store closed: %w", ErrClosed)
		}
	}
}

// writeHeld is commitUnlock for an append's goroutine, which holds
// commitMu: a failed write is left to the committer, which logs it and
// retries, and the error says the record is in memory only.
func (s *Store) writeHeld(wake wakeMode) error {
	if err := s.commitUnlock(wake); err != nil {
		s.kickCommit()
		return fmt.Errorf("storage: message stored in memory, not yet written to the log: %w", err)
	}
	return nil
}

// kickCommit wakes the committer.
func (s *Store) kickCommit() {
	select {
	case s.commitKick <- struct{}{}:
	default:
	}
}
