package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// The raw API copies the commit log record for record to another store
// (replication, docs/replication.md). A raw chunk is a run of whole records
// as they are in the segment files, each at its own log offset, with two
// exceptions that keep chunks small: a blank record is carried as its
// 12-byte header alone (its size field still says how far it reaches: the
// end of its segment), and the tail of a segment too short for a header
// (zeros) is carried as nothing. Both ends apply the same rule to find
// where the next record goes, so a copy has the same segments, the same
// records at the same offsets, and hence the same message ids and indexes.

// EndOffset is the end of the committed log: what readers and ReadRaw see.
func (s *Store) EndOffset() int64 { return s.written.Load() }

// SegmentSize is the configured segment size; a copy of the log needs the
// same one, since records and blanks go to the same offsets.
func (s *Store) SegmentSize() int64 { return s.opts.SegmentSize }

// MinOffset is the first log offset still stored (retention moves it).
func (s *Store) MinOffset() int64 { return s.log.minOffset() }

// segmentBounds returns the end of the segment that holds log offset pos,
// counting segments that do not exist yet as the writer would make them.
// Caller holds mu (it reads the active segment).
func (s *Store) segmentBounds(pos int64) int64 {
	act := s.log.active
	if pos < act.end() {
		if seg := s.log.find(pos); seg != nil {
			return seg.end()
		}
		return act.end()
	}
	return act.end() + ((pos-act.end())/s.opts.SegmentSize+1)*s.opts.SegmentSize
}

// ReadRaw copies whole records of the committed log from off into a new
// slice of at most max bytes (at least one record when off < EndOffset(),
// even if larger than max), and returns the log offset that follows them,
// the next call's off. off must be a record boundary (a copy's end); an
// off below MinOffset or past EndOffset is an *OffsetError. At the end it
// returns nil, off, nil.
func (s *Store) ReadRaw(off int64, max int) ([]byte, int64, error) {
	end := s.written.Load()
	if lo := s.log.minOffset(); off < lo || off > end {
		return nil, off, &OffsetError{Offset: off, Min: lo, Max: end}
	}
	var out []byte
	pos := off
	for pos < end {
		seg := s.log.find(pos)
		if seg == nil {
			return out, pos, fmt.Errorf("%w: no segment holds log offset %d", ErrCorrupt, pos)
		}
		next, done, err := s.readRawSegment(seg, pos, end, max, &out)
		if err != nil {
			return out, pos, err
		}
		pos = next
		if done {
			break
		}
	}
	return out, pos, nil
}

// readRawSegment appends to out the records of seg from pos until end, the
// segment's end or max bytes, and returns where it stopped and whether max
// was reached.
func (s *Store) readRawSegment(seg *segment, pos, end int64, max int, out *[]byte) (int64, bool, error) {
	seg.mu.RLock()
	defer seg.mu.RUnlock()
	if seg.closed {
		return pos, true, &OffsetError{Offset: pos, Min: s.log.minOffset(), Max: end}
	}
	start := pos
	flush := func() {
		if pos > start {
			if *out == nil {
				*out = make([]byte, 0, min(int64(max), end-start, 4<<20)+int64(pos-start))
			}
			*out = append(*out, seg.data[start-seg.base:pos-seg.base]...)
		}
	}
	for pos < end {
		rel := pos - seg.base
		if seg.cap-rel < headerSize {
			flush()
			return seg.end(), false, nil
		}
		kind, size, why := frame(seg.readable(rel, end), int(seg.cap-rel), s.log.limit)
		switch kind {
		case frameRecord:
			if at := int64(binary.BigEndian.Uint64(seg.data[rel+28:])); at != pos {
				return pos, true, fmt.Errorf("%w: log offset %d in %s: record says it is at log offset %d", ErrCorrupt, pos, seg.path, at)
			}
			if len(*out)+int(pos-start)+size > max && (len(*out) > 0 || pos > start) {
				flush()
				return pos, true, nil
			}
			pos += int64(size)
		case frameBlank:
			flush()
			*out = append(*out, seg.data[rel:rel+headerSize]...)
			return seg.end(), false, nil
		case frameEnd:
			return pos, true, fmt.Errorf("%w: log offset %d in %s: nothing written before the committed end %d", ErrCorrupt, pos, seg.path, end)
		default:
			return pos, true, fmt.Errorf("%w: log offset %d in %s: %s", ErrCorrupt, pos, seg.path, why)
		}
	}
	flush()
	return pos, false, nil
}

// rawRecord is one record of a raw chunk, checked.
type rawRecord struct {
	pos   int64  // its log offset
	rec   []byte // the record, or a blank's header
	blank bool
	key   queueKey // the record's queue (topic shares rec)
	qoff  int64
	store int64 // store time
}

// checkRaw frames and checks every record of b, a raw chunk that starts at
// off, against the layout of this log and the queues' next offsets. It
// returns the records or an ErrCorrupt error naming the offset and why.
// Caller holds mu.
func (s *Store) checkRaw(off int64, b []byte) ([]rawRecord, error) {
	var recs []rawRecord
	next := map[queueKey]int64{}
	pos, p := off, 0
	for p < len(b) {
		end := s.segmentBounds(pos)
		if end-pos < headerSize {
			pos = end
			continue
		}
		kind, size, why := frame(b[p:], int(end-pos), s.log.limit)
		switch kind {
		case frameBlank:
			if len(b)-p < headerSize {
				return nil, fmt.Errorf("%w: raw chunk at log offset %d: a blank header cut short", ErrCorrupt, pos)
			}
			recs = append(recs, rawRecord{pos: pos, rec: b[p : p+headerSize], blank: true})
			p += headerSize
			pos = end
			continue
		case frameRecord:
		case frameEnd:
			return nil, fmt.Errorf("%w: raw chunk at log offset %d: zeros where a record should be", ErrCorrupt, pos)
		default:
			return nil, fmt.Errorf("%w: raw chunk at log offset %d: %s", ErrCorrupt, pos, why)
		}
		rec := b[p : p+size]
		if at := int64(binary.BigEndian.Uint64(rec[28:])); at != pos {
			return nil, fmt.Errorf("%w: raw chunk: the record at log offset %d says it is at %d", ErrCorrupt, pos, at)
		}
		if int64(size) > end-pos {
			return nil, fmt.Errorf("%w: raw chunk: the record of %d bytes at log offset %d runs past its segment's end %d (segment sizes differ?)", ErrCorrupt, size, pos, end)
		}
		var m Message
		if err := decodeRecord(rec, &m, nil); err != nil {
			return nil, fmt.Errorf("raw chunk at log offset %d: %w", pos, err)
		}
		if err := validTopic(m.Topic); err != nil {
			return nil, fmt.Errorf("%w: raw chunk at log offset %d: %v", ErrCorrupt, pos, err)
		}
		k := queueKey{m.Topic, m.QueueID}
		want, known := next[k]
		if !known {
			if n := s.nextOffset[k]; n != nil {
				want, known = *n, true
			}
		}
		if known && m.QueueOffset != want {
			return nil, fmt.Errorf("%w: raw chunk: the record at log offset %d is offset %d of %s/%d, whose next offset here is %d",
				ErrCorrupt, pos, m.QueueOffset, m.Topic, m.QueueID, want)
		}
		next[k] = m.QueueOffset + 1
		recs = append(recs, rawRecord{pos: pos, rec: rec, key: k, qoff: m.QueueOffset, store: m.StoreTime})
		p += size
		pos += int64(size)
	}
	return recs, nil
}

// AppendRaw appends b, a raw chunk of records copied from another log (see
// ReadRaw), at their own offsets: off must be the current end. Every
// record's frame, checksum, own log offset, segment and queue offset are
// checked before anything is written; a bad one is an ErrCorrupt error
// naming the offset and why, and nothing is written. Blank records seal
// segments as they did in the other log. The dispatcher indexes the records
// as it does appends; the queues' next offsets follow. It returns once the
// records are written to the OS (EndOffset has moved past them); their
// durability is WaitDurable's or WaitSynced's, as for appends.
func (s *Store) AppendRaw(off int64, b []byte) error {
	if f := s.rawFence.Load(); f != nil {
		return *f
	}
	if len(b) == 0 {
		return nil
	}
	s.mu.Lock()
	if err := s.waitRoomLocked(); err != nil {
		s.mu.Unlock()
		return err
	}
	if off != s.writePos {
		end := s.writePos
		s.mu.Unlock()
		return fmt.Errorf("storage: raw append at log offset %d, but the log ends at %d", off, end)
	}
	recs, err := s.checkRaw(off, b)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	bytes := 0
	for _, r := range recs {
		if r.blank {
			last := s.log.active
			rel := r.pos - last.base
			if r.pos < last.base || r.pos >= last.end() {
				err = fmt.Errorf("storage: raw append: blank at log offset %d outside the last segment [%d, %d)", r.pos, last.base, last.end())
				break
			}
			if err = last.ensure(rel + headerSize); err != nil {
				break
			}
			copy(s.bufFor(last, r.pos, headerSize), r.rec)
			s.cur.sealed = true
			s.writePos = last.end()
			continue
		}
		seg, at, blank, rerr := s.log.reserve(s.writePos, len(r.rec))
		if rerr == nil && (blank != 0 || at != r.pos) {
			rerr = fmt.Errorf("storage: raw append: the record at log offset %d would go to %d here (blank %d): segment layouts differ", r.pos, at, blank)
		}
		if rerr != nil {
			err = rerr
			break
		}
		copy(s.bufFor(seg, at, len(r.rec)), r.rec)
		n := s.nextOffset[r.key]
		if n == nil {
			n = new(int64)
			r.key.topic = strings.Clone(r.key.topic)
			s.nextOffset[r.key] = n
		}
		*n = r.qoff + 1
		if r.store > s.lastStoreTime {
			s.lastStoreTime = r.store // store times stay monotone if this log is appended to later
		}
		s.writePos = at + int64(len(r.rec))
		bytes += len(r.rec)
		s.appendedMsgs.Add(1)
	}
	s.mu.Unlock()
	s.appendedBytes.Add(int64(bytes))
	if cerr := s.commit(); err == nil {
		err = cerr
	}
	return err
}

// Fence makes every later append of messages (Append, AppendBatch,
// AppendBatchNoWait) fail with err, which should wrap ErrFenced; nil lifts
// it. A master whose lease ran out is fenced so that it acknowledges
// nothing a new master may not have; a replica stays fenced, so that
// nothing but the copy (AppendRaw, which Fence does not block) writes to
// it.
func (s *Store) Fence(err error) { setFence(&s.fence, err) }

// FenceRaw makes every later AppendRaw fail with err, which should wrap
// ErrFenced; nil lifts it. A master fences its raw appends: records copied
// from another log must never land in a log that takes appends of its own.
func (s *Store) FenceRaw(err error) { setFence(&s.rawFence, err) }

// setFence sets the fence f to err; nil lifts it.
func setFence(f *atomic.Pointer[error], err error) {
	if err == nil {
		f.Store(nil)
		return
	}
	f.Store(&err)
}

// AckGate is what acknowledged appends wait for besides local durability:
// the in-sync replicas of the sync replication mode.
type AckGate interface {
	// Wait returns nil once the log up to end is acknowledged, or why it
	// cannot be (too few replicas, fenced, ctx).
	Wait(ctx context.Context, end int64) error
}

// Confirmer is an AckGate that also says up to where the log is
// confirmed (the sync mode's in-sync replicas have it). While one is the
// gate, the dispatcher indexes no further than that, so readers see only
// records no failover can take back (RocketMQ 5's confirm offset). It
// calls KickDispatch when the confirmed offset moves.
type Confirmer interface {
	Confirmed() int64
}

// Admitter is an AckGate that can tell before an append that it would
// refuse to acknowledge it (too few in-sync replicas), so that a write it
// refuses is not stored either.
type Admitter interface {
	Admit() error
}

// Admit returns why the gate would refuse to acknowledge an append now,
// nil when it would not (or there is no gate). Writers of messages ask it
// first; records the broker needs whatever the replicas (its state, an
// epoch) do not.
func (s *Store) Admit() error {
	if b := s.gate.Load(); b != nil {
		if a, ok := b.g.(Admitter); ok {
			return a.Admit()
		}
	}
	return nil
}

type gateBox struct{ g AckGate }

// KickDispatch wakes the dispatcher: a Confirmer calls it when more of
// the log is confirmed.
func (s *Store) KickDispatch() {
	select {
	case s.dispatchKick <- struct{}{}:
	default:
	}
}

// dispatchEnd is how far the dispatcher may index: the committed end, or
// less while a Confirmer gate says less is confirmed.
func (s *Store) dispatchEnd() int64 {
	end := s.written.Load()
	if b := s.gate.Load(); b != nil {
		if c, ok := b.g.(Confirmer); ok {
			end = min(end, c.Confirmed())
		}
	}
	return end
}

// WaitIndexed returns once the indexes cover the log up to off (readers
// see every record before it), or ctx ends, or the store closes.
func (s *Store) WaitIndexed(ctx context.Context, off int64) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for s.dispatched.Load() < off {
		select {
		case <-ctx.Done():
			return fmt.Errorf("storage: indexed up to log offset %d, waiting for %d: %w", s.dispatched.Load(), off, ctx.Err())
		case <-s.stop:
			return ErrClosed
		case <-t.C:
		}
	}
	return nil
}

// SetAckGate installs g: Append, AppendBatch and WaitDurable return only
// once g.Wait(ctx, end) returns, after local durability, and fail with its
// error. nil removes it. AppendBatchNoWait and WaitSynced do not wait for it.
func (s *Store) SetAckGate(g AckGate) {
	defer s.KickDispatch() // a Confirmer gone or changed: index what it held back
	if g == nil {
		s.gate.Store(nil)
		return
	}
	s.gate.Store(&gateBox{g})
}

// WaitEnd returns a channel closed once the committed end (EndOffset) is
// past off, or the store is closed: a replication sender's long poll. (It
// may close earlier, at any commit: callers check the end again.)
func (s *Store) WaitEnd(off int64) <-chan struct{} {
	for {
		p := s.endWake.Load()
		if p == nil {
			ch := make(chan struct{})
			if !s.endWake.CompareAndSwap(nil, &ch) {
				continue
			}
			p = &ch
		}
		if s.written.Load() > off || s.isClosed() {
			s.wakeEnd()
		}
		return *p
	}
}

// wakeEnd closes the channel WaitEnd gave out, if any.
func (s *Store) wakeEnd() {
	if p := s.endWake.Swap(nil); p != nil {
		close(*p)
	}
}

func (s *Store) isClosed() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// Truncate cuts the log at off, a record boundary between MinOffset and
// EndOffset, on an open store: the records from off on go, with their
// queue and key index entries; the queues' next offsets go back. The cut is
// fsynced, with a checkpoint, before it returns; appends are refused
// (ErrTruncating) while it runs. It logs the offset and the bytes dropped.
func (s *Store) Truncate(off int64) error {
	defer s.KickDispatch() // which wakes the watchers of what the cut indexed before it cut
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.cutting = true
	s.room.Broadcast()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cutting = false
		s.mu.Unlock()
	}()
	// What was appended before is written and indexed first, so that every
	// queue it touched exists and the cut below sees one consistent log.
	if err := s.commit(); err != nil {
		return err
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	end := s.written.Load()
	if err := s.dispatch(end); err != nil {
		return err
	}
	if lo := s.log.minOffset(); off < lo || off > end {
		return &OffsetError{Offset: off, Min: lo, Max: end}
	}
	if off == end {
		return nil
	}
	if err := s.checkBoundary(off, end); err != nil {
		return err
	}
	s.cutCount.Add(1)
	s.written.Store(off) // readers stop at the cut from now on
	lost, err := s.cutLog(off)
	if err != nil {
		return err
	}
	s.writePos = off
	s.flushMu.Lock()
	s.flushed = min(s.flushed, off)
	s.cuts++ // a flush round that began before the cut must not raise flushed past it
	s.flushMu.Unlock()
	seg := s.log.find(off)
	for base := range s.keys.bases() {
		if seg == nil || base > seg.base {
			if err := s.keys.drop(base); err != nil {
				return err
			}
		}
	}
	if err := s.keys.truncate(off); err != nil {
		return err
	}
	for _, q := range s.allQueues() {
		if err := s.truncateQueue(q, off); err != nil {
			return err
		}
	}
	s.dispatched.Store(off)
	for k := range s.nextOffset {
		delete(s.nextOffset, k)
	}
	for _, q := range s.allQueues() {
		next := q.max.Load()
		s.nextOffset[queueKey{q.topic, q.id}] = &next
		if err := q.sync(); err != nil {
			return err
		}
	}
	if err := s.keys.sync(); err != nil {
		return err
	}
	if err := writeCheckpoint(s.cp, checkpointData{offset: off, perFile: s.opts.QueueFileEntries, queues: len(s.allQueues())}); err != nil {
		return err
	}
	s.logger.Warn("storage: truncated the log", "offset", off, "end_was", end, "bytes_dropped", lost)
	return nil
}

// checkBoundary reports whether a record, a blank or a segment's short
// tail starts at off (< end): a record there carries off as its own offset.
// Caller holds mu.
func (s *Store) checkBoundary(off, end int64) error {
	seg := s.log.find(off)
	if seg == nil {
		return fmt.Errorf("storage: truncate at log offset %d: no segment holds it", off)
	}
	seg.mu.RLock()
	defer seg.mu.RUnlock()
	rel := off - seg.base
	if seg.cap-rel < headerSize {
		return nil
	}
	kind, _, why := frame(seg.readable(rel, end), int(seg.cap-rel), s.log.limit)
	switch kind {
	case frameBlank:
		return nil
	case frameRecord:
		if at := int64(binary.BigEndian.Uint64(seg.data[rel+28:])); at != off {
			return fmt.Errorf("storage: truncate at log offset %d: not a record boundary (the record there says %d)", off, at)
		}
		return nil
	default:
		return fmt.Errorf("storage: truncate at log offset %d: not a record boundary: %s", off, why)
	}
}

// bases lists the segments the key index has files for.
func (k *keyIndex) bases() map[int64]bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[int64]bool, len(k.files))
	for base := range k.files {
		out[base] = true
	}
	return out
}
