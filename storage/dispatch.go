package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// errIndexGap: the log continues a queue past the end of its index.
var errIndexGap = errors.New("storage: index gap")

// dispatchBatch is how many records the dispatcher indexes before it writes
// the entries out and wakes readers.
const dispatchBatch = 4096

// inlineDispatchMax is the most log a commit indexes itself (indexInline)
// rather than waking the dispatcher: 64 KiB, a few hundred small records,
// some tens of microseconds of indexing. One message at a time (a fleet of
// devices publishing at QoS 1) is indexed with no hand-off to another
// goroutine, which costs more than the indexing; a big commit (native
// publishes at hundreds of thousands a second) leaves its indexing to the
// dispatcher, which runs in parallel with the next commit.
const inlineDispatchMax = 64 << 10

// dispatchLoop indexes what appends write. It and indexInline take
// dispatchMu to index: one indexes at a time, and the indexes have one
// writer (Truncate, which keeps both out with cutMu, and recovery, which
// runs before them, are the others).
func (s *Store) dispatchLoop() {
	defer s.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-s.dispatchKick:
		case <-retry.C:
		case <-s.stop:
			if err := s.dispatchHeld(s.written.Load); err != nil {
				s.logger.Error("storage: index at close", "err", err)
			}
			return
		}
		if err := s.dispatchHeld(s.dispatchEnd); err != nil {
			// A write to an index failed (a full disk, say): the log is
			// intact and the next round redoes the same entries.
			s.logger.Error("storage: indexing stalled; retrying in 1s", "err", err)
			retry.Reset(time.Second)
		}
	}
}

// dispatchHeld is dispatch up to end() for the dispatcher, under
// dispatchMu and cutMu: end is read once they are held.
func (s *Store) dispatchHeld(end func() int64) error {
	defer s.wakeWatchers(false)
	s.dispatchMu.Lock()
	defer s.dispatchMu.Unlock()
	s.cutMu.RLock()
	defer s.cutMu.RUnlock()
	return s.dispatch(end())
}

// indexInline indexes what a commit just wrote on the committing goroutine
// when it is small (inlineDispatchMax) and nobody else indexes or cuts the
// log now; otherwise, or when indexing fails, it wakes the dispatcher (which
// logs the error and retries). The committer calls it after releasing
// commitMu, so that a slow index write never holds up the log's writes; it
// only tries dispatchMu and cutMu, since it may hold flushRun or cutMu
// (Truncate, which holds cutMu and commits, cannot deadlock with it). wake
// says who wakes the watchers of the queues it indexed.
func (s *Store) indexInline(wake wakeMode) {
	end := s.dispatchEnd()
	if end-s.dispatched.Load() > inlineDispatchMax || !s.dispatchMu.TryLock() {
		s.KickDispatch()
		return
	}
	if !s.cutMu.TryRLock() {
		s.dispatchMu.Unlock()
		s.KickDispatch()
		return
	}
	err := s.dispatch(end)
	s.cutMu.RUnlock()
	s.dispatchMu.Unlock()
	switch {
	case err != nil:
		s.KickDispatch()
	case wake != wakeLater:
		s.wakeWatchers(wake == wakeHere)
	case s.wokenAny.Load():
		s.KickDispatch() // which wakes them
	}
}

// wakeMode says who wakes the watchers of what a commit indexes.
type wakeMode uint8

const (
	// wakeLater: the dispatcher. The committing goroutine may be an
	// append waiting under its caller's locks, which a Waker could take.
	wakeLater wakeMode = iota
	// wakeHandOff: the committing goroutine, one of the store's own,
	// which every reader waits behind: Wake(false).
	wakeHandOff
	// wakeHere: the committing goroutine, a front-end's that holds no
	// lock and may serve the readers itself (WriteNow): Wake(true).
	wakeHere
)

// dispatch indexes the log from s.dispatched up to to. Records there were
// written by this store (or checked by recovery), so their frames are trusted
// except for what keeps the walk itself safe.
func (s *Store) dispatch(to int64) error {
	defer s.handOverWoken()
	off := s.dispatched.Load()
	n := 0
	for off < to {
		seg := s.log.find(off)
		if seg == nil {
			return fmt.Errorf("storage: dispatch: no segment holds log offset %d", off)
		}
		next, err := s.dispatchSegment(seg, off, to, &n)
		if err == nil && (n >= dispatchBatch || next >= to) {
			err = s.writeIndexes()
		}
		if err != nil {
			s.dropPending() // the next round starts again from s.dispatched
			return err
		}
		off = next
		if n >= dispatchBatch || off >= to {
			s.dispatched.Store(off)
			n = 0
		}
	}
	return nil
}

// dispatchSegment indexes records of seg from off until to, the segment's
// end or a full batch, and returns where it stopped.
func (s *Store) dispatchSegment(seg *segment, off, to int64, n *int) (int64, error) {
	seg.mu.RLock()
	defer seg.mu.RUnlock()
	if seg.closed {
		return seg.end(), nil
	}
	be := binary.BigEndian
	for off < to && *n < dispatchBatch {
		b := seg.readable(off-seg.base, to)
		if len(b) < headerSize {
			return seg.end(), nil
		}
		size := int(be.Uint32(b))
		switch be.Uint32(b[4:]) {
		case blankMagic:
			return seg.end(), nil
		case recordMagic:
		default:
			return off, fmt.Errorf("storage: dispatch: bad magic at log offset %d", off)
		}
		if size < minRecordSize || size > len(b) {
			return off, fmt.Errorf("storage: dispatch: record size %d at log offset %d", size, off)
		}
		if err := s.index(b[:size], off, seg.base); err != nil {
			return off, err
		}
		off += int64(size)
		*n++
	}
	return off, nil
}

// index adds the entries of the record rec at log offset off to the pending
// batch. rec points into the mapping: nothing of it may be kept.
func (s *Store) index(rec []byte, off, segBase int64) error {
	be := binary.BigEndian
	tlen := int(rec[fixedSize])
	if recordFieldsOff+tlen > len(rec) {
		return fmt.Errorf("storage: dispatch: topic overruns record at log offset %d", off)
	}
	topic := unsafe.String(&rec[recordFieldsOff], tlen) // lookup only
	k := queueKey{topic, int(be.Uint32(rec[16:]))}
	qoff := int64(be.Uint64(rec[20:]))
	p := s.pend[k]
	if p == nil {
		k.topic = strings.Clone(topic)
		q, err := s.queue(k.topic, k.id, true)
		if err != nil {
			return err
		}
		p = &pending{q: q}
		s.pend[k] = p
	}
	if len(p.buf) == 0 {
		p.first = qoff
	} else if p.first+int64(len(p.buf)/entrySize) != qoff {
		if err := s.writePending(p); err != nil {
			return err
		}
		p.first = qoff
	}
	var e [entrySize]byte
	putEntry(e[:], entry{logOffset: off, size: int32(len(rec)), subjectHash: be.Uint32(rec[64:]), storeTime: int64(be.Uint64(rec[44:]))})
	p.buf = append(p.buf, e[:]...)

	// Keys follow the topic and the subject.
	r := reader{b: rec, p: recordFieldsOff + tlen}
	r.bytes(int(r.u16()))
	for nk := int(r.u16()); nk > 0 && r.ok(); nk-- {
		key := r.bytes(int(r.u16()))
		if !r.ok() {
			break
		}
		var ke [keyEntrySize]byte
		be.PutUint64(ke[:], keyHash(unsafe.String(unsafe.SliceData(key), len(key))))
		be.PutUint64(ke[8:], uint64(off))
		s.keyPend[segBase] = append(s.keyPend[segBase], ke[:]...)
	}
	return nil
}

// writeIndexes adds the pending entries to their queues' tails (see
// queue.add), writes the key entries and wakes the readers of the queues
// that grew.
func (s *Store) writeIndexes() error {
	for _, p := range s.pend {
		if err := s.writePending(p); err != nil {
			return err
		}
	}
	for base, b := range s.keyPend {
		if err := s.keys.append(base, b); err != nil {
			return err
		}
		delete(s.keyPend, base)
	}
	return nil
}

func (s *Store) dropPending() {
	for _, p := range s.pend {
		p.buf = p.buf[:0]
	}
	clear(s.keyPend)
}

func (s *Store) writePending(p *pending) error {
	if len(p.buf) == 0 {
		return nil
	}
	q := p.q
	if max := q.max.Load(); p.first < max {
		// The log is the truth: entries past this point are stale.
		s.logger.Warn("storage: index ahead of the log; truncating", "topic", q.topic, "queue", q.id, "from", p.first, "max", max)
		if err := q.truncate(p.first); err != nil {
			return err
		}
	}
	if max, min := q.max.Load(), q.min.Load(); p.first > max && max > min {
		err := fmt.Errorf("%w: %s/%d has entries up to %d, the log continues at %d", errIndexGap, q.topic, q.id, max, p.first)
		if s.recovering {
			return err // recovery rebuilds the indexes
		}
		s.logger.Error("storage: queue offsets skip; the skipped offsets read as holes", "err", err)
	}
	if err := q.add(p.first, p.buf); err != nil {
		return err
	}
	s.wokenBuf = q.publish(p.first, p.first+int64(len(p.buf)/entrySize), s.wokenBuf)
	p.buf = p.buf[:0]
	return nil
}

// A Waker is told that a queue it watches (Store.Watch) grew. Wake is
// called once per Watch, on the goroutine that indexed the growth, once it
// holds none of the store's locks. With here, that goroutine is a
// front-end's, which made its own appends durable (WriteNow) and may serve
// the reader itself; otherwise it is one of the store's (the committer,
// the dispatcher), which every reader waits behind, and Wake should hand
// the work to a goroutine of the reader's and return.
type Waker interface{ Wake(here bool) }

// handOverWoken moves the watchers publish collected to the list that
// wakeWatchers empties. Caller indexes (dispatchMu, or recovery).
func (s *Store) handOverWoken() {
	if len(s.wokenBuf) == 0 {
		return
	}
	s.wokenMu.Lock()
	s.woken = append(s.woken, s.wokenBuf...)
	s.wokenAny.Store(true)
	s.wokenMu.Unlock()
	clear(s.wokenBuf) // no watcher kept alive by the buffer
	s.wokenBuf = s.wokenBuf[:0]
}

// wakeWatchers wakes the watchers of the queues indexing made grow. Whoever
// indexed calls it once it holds no lock, with here as in Waker; a watcher
// one caller misses (it was handed over after that caller looked) is woken
// by the next.
func (s *Store) wakeWatchers(here bool) {
	if !s.wokenAny.Load() {
		return
	}
	s.wokenMu.Lock()
	ws := s.woken
	s.wokenAny.Store(false)
	if len(ws) == 0 { // another caller took them: keep the spare
		s.wokenMu.Unlock()
		return
	}
	s.woken, s.wokenSpare = s.wokenSpare, nil
	s.wokenMu.Unlock()
	for _, w := range ws {
		w.Wake(here)
	}
	clear(ws)
	s.wokenMu.Lock()
	if s.wokenSpare == nil {
		s.wokenSpare = ws[:0]
	}
	s.wokenMu.Unlock()
}
