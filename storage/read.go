package storage

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Filter selects messages in a read. MatchHash sees only the subject hash
// kept in the index and may say yes to messages that do not match (it must
// not say no to one that does); Match sees the decoded message and decides.
type Filter interface {
	MatchHash(subjectHash uint32) bool
	Match(m *Message) bool
}

// ReadOptions limit a read. A read returns at least one message if any is
// there, even one larger than MaxBytes.
type ReadOptions struct {
	MaxCount int    // default 32
	MaxBytes int    // total record bytes; default 4 MiB
	Filter   Filter // nil for every message
	// Kept says that the reader keeps the messages and never calls
	// Release: the memory they lie in is then sized to their records
	// rather than to an arena's size class, which only pays off for
	// arenas given back.
	Kept bool
}

// ReadResult is what a read found. Next is the queue offset to read from
// next time: past the messages returned and past those the filter skipped.
type ReadResult struct {
	Messages []Message
	Next     int64

	arenas []*[]byte // the memory Messages lie in: see Release
}

// Release gives the memory the messages lie in back for later reads, for
// a reader that is done with them: it keeps no message, body, string or
// key of them (it has copied out what it needs). After it r.Messages is
// nil. A result not released is collected as any other memory.
func (r *ReadResult) Release() {
	for _, p := range r.arenas {
		putArena(p)
	}
	r.arenas, r.Messages = nil, nil
}

// maxScan bounds how many index entries one filtered read looks at.
const maxScan = 1 << 16

// Read returns messages of (topic, queueID) from queue offset offset on. An
// offset equal to the queue's maximum returns nothing (wait on WaitCh); one
// outside [min, max] is an *OffsetError. A record that fails its checksum is
// an ErrCorrupt error once the messages before it have been returned.
func (s *Store) Read(topic string, queueID int, offset int64, o ReadOptions) (ReadResult, error) {
	if o.MaxCount <= 0 {
		o.MaxCount = 32
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 4 << 20
	}
	q, err := s.queue(topic, queueID, false)
	if err != nil {
		return ReadResult{Next: offset}, err
	}
	var lo, hi int64
	if q != nil {
		lo, hi = q.min.Load(), q.max.Load()
	}
	if offset < lo || offset > hi {
		return ReadResult{Next: offset}, &OffsetError{Topic: topic, QueueID: queueID, Offset: offset, Min: lo, Max: hi}
	}
	res := ReadResult{Next: offset}
	if offset == hi {
		return res, nil
	}
	lr := logReader{l: s.log, written: s.written.Load()}
	defer lr.release()
	var buf [256 * entrySize]byte
	var arena *[]byte // the records of this read, copied out of the log
	var slab slabs    // the messages' keys and properties
	res.Messages = make([]Message, 0, min(int64(o.MaxCount), hi-offset))
	bytes := 0
	stop := offset + maxScan
	for res.Next < hi && res.Next < stop && len(res.Messages) < o.MaxCount {
		want := int(min(hi-res.Next, int64(len(buf)/entrySize)))
		n, err := q.read(res.Next, buf[:want*entrySize])
		if err != nil {
			return res, err
		}
		for i := 0; i < n; i++ {
			e := getEntry(buf[i*entrySize:])
			if e.size == 0 || (o.Filter != nil && !o.Filter.MatchHash(e.subjectHash)) {
				res.Next++
				continue
			}
			if len(res.Messages) > 0 && (bytes+int(e.size) > o.MaxBytes || len(res.Messages) == o.MaxCount) {
				return res, nil
			}
			if arena == nil || cap(*arena)-len(*arena) < int(e.size) {
				size := arenaSize(buf[i*entrySize:n*entrySize], o.MaxCount-len(res.Messages), o.MaxBytes-bytes)
				if o.Kept {
					arena = exactArena(size)
				} else {
					arena = getArena(size)
					res.arenas = append(res.arenas, arena)
				}
			}
			slab.left = int(min(int64(o.MaxCount-len(res.Messages)), hi-res.Next))
			m, err := decodeAt(&lr, arena, &slab, e.logOffset)
			if errors.Is(err, ErrNotFound) { // deleted by retention under us
				res.Next++
				continue
			}
			if err != nil {
				if len(res.Messages) > 0 {
					return res, nil // the error comes with the next read
				}
				return res, fmt.Errorf("%s/%d offset %d: %w", topic, queueID, res.Next, err)
			}
			if m.Topic != topic || m.QueueID != queueID || m.QueueOffset != res.Next {
				return res, fmt.Errorf("%w: index entry %s/%d %d points at %s/%d %d (log offset %d)",
					ErrCorrupt, topic, queueID, res.Next, m.Topic, m.QueueID, m.QueueOffset, e.logOffset)
			}
			res.Next++
			res.Messages = append(res.Messages, m)
			if o.Filter != nil && !o.Filter.Match(&res.Messages[len(res.Messages)-1]) {
				res.Messages = res.Messages[:len(res.Messages)-1]
				continue
			}
			bytes += m.Size
		}
	}
	return res, nil
}

// arenaSize is the room the records of the next entries need, at most count
// of them and about limit bytes (the first one whatever its size).
func arenaSize(entries []byte, count, limit int) int {
	total := 0
	for p := 0; p+entrySize <= len(entries) && count > 0; p += entrySize {
		size := int(getEntry(entries[p:]).size)
		if total > 0 && total+size > limit {
			break
		}
		total += size
		count--
	}
	return total
}

// readRecord reads and decodes the record at a log offset, into arena if
// it is not nil and has room.
func (s *Store) readRecord(arena *[]byte, off, written int64) (Message, error) {
	lr := logReader{l: s.log, written: written}
	defer lr.release()
	return decodeAt(&lr, arena, nil, off)
}

// decodeAt reads and decodes the record at off through lr, into arena and
// slab (decodeRecord) when they are not nil.
func decodeAt(lr *logReader, arena *[]byte, slab *slabs, off int64) (Message, error) {
	var m Message
	rec, err := lr.read(arena, off)
	if err != nil {
		return m, err
	}
	if err := decodeRecord(rec, &m, slab); err != nil {
		return m, fmt.Errorf("log offset %d: %w", off, err)
	}
	return m, nil
}

// ReadAt returns the message whose record starts at a log offset. A message
// appended but not yet committed to the file is committed first.
func (s *Store) ReadAt(logOffset int64) (Message, error) {
	if logOffset >= s.written.Load() {
		if err := s.commit(); err != nil {
			return Message{}, err
		}
	}
	m, err := s.readRecord(nil, logOffset, s.written.Load())
	if err == nil && m.LogOffset != logOffset {
		err = fmt.Errorf("%w: record at log offset %d says it is at %d", ErrCorrupt, logOffset, m.LogOffset)
	}
	return m, err
}

// MessageID is the id of the message stored at logOffset.
func (s *Store) MessageID(logOffset int64) string { return MessageID(s.logID.Load(), logOffset) }

// Get returns the message with the given id.
func (s *Store) Get(id string) (Message, error) {
	logID, off, err := ParseMessageID(id)
	if err != nil {
		return Message{}, err
	}
	if logID != s.logID.Load() {
		return Message{}, fmt.Errorf("%w: message id %s is from another log", ErrNotFound, id)
	}
	if off < s.log.minOffset() {
		return Message{}, fmt.Errorf("%w: message %s was deleted by retention", ErrNotFound, id)
	}
	return s.ReadAt(off)
}

// LookupKey returns up to max messages carrying key, newest first.
func (s *Store) LookupKey(key string, max int) ([]Message, error) {
	offs, err := s.keys.lookup(keyHash(key), max*2+8) // hash collisions are checked below
	if err != nil {
		return nil, err
	}
	written := s.written.Load()
	seen := map[int64]bool{}
	var out []Message
	for _, off := range offs {
		if len(out) == max || seen[off] {
			continue
		}
		seen[off] = true
		m, err := s.readRecord(nil, off, written)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		for _, k := range m.Keys {
			if k == key {
				out = append(out, m)
				break
			}
		}
	}
	return out, nil
}

// WaitCh returns a channel that is closed when (topic, queueID) next gets
// messages. Check the queue's maximum after taking the channel, then wait.
func (s *Store) WaitCh(topic string, queueID int) (<-chan struct{}, error) {
	q, err := s.queue(topic, queueID, true)
	if err != nil {
		return nil, err
	}
	return q.waitCh(), nil
}

// WaitChEnd is WaitCh that also returns the queue's end (its maximum
// offset), looked at after the channel was taken: a reader below it has
// messages to read, and one that has read up to it waits on ch without
// losing a wake-up.
func (s *Store) WaitChEnd(topic string, queueID int) (ch <-chan struct{}, end int64, err error) {
	q, err := s.queue(topic, queueID, true)
	if err != nil {
		return nil, 0, err
	}
	ch = q.waitCh()
	return ch, q.max.Load(), nil
}

// Watch is WaitCh with a Waker instead of a channel: w is woken once the
// queue grows past end (once, however much it grows). end is the queue's
// maximum offset as it was once w was added: a reader at an offset below
// it has messages to read, and one that has read up to it learns of the
// next from w. Adding w again before it is woken does nothing; Unwatch
// takes it off.
func (s *Store) Watch(topic string, queueID int, w Waker) (end int64, err error) {
	q, err := s.queue(topic, queueID, true)
	if err != nil {
		return 0, err
	}
	return q.watchAt(w), nil
}

// Unwatch takes w off the watchers of (topic, queueID).
func (s *Store) Unwatch(topic string, queueID int, w Waker) {
	if q, _ := s.queue(topic, queueID, false); q != nil {
		q.unwatch(w)
	}
}

// Offsets returns the minimum and maximum queue offsets of (topic, queueID):
// messages [min, max) are readable. A queue never written has 0, 0.
func (s *Store) Offsets(topic string, queueID int) (min, max int64) {
	q, _ := s.queue(topic, queueID, false)
	if q == nil {
		return 0, 0
	}
	return q.min.Load(), q.max.Load()
}

// OffsetForTime returns the first queue offset of (topic, queueID) whose
// message was stored at or after t, or the maximum if none was.
func (s *Store) OffsetForTime(topic string, queueID int, t time.Time) (int64, error) {
	q, err := s.queue(topic, queueID, false)
	if err != nil || q == nil {
		return 0, err
	}
	ts := t.UnixNano()
	return s.searchQueue(q, func(e entry) bool { return e.storeTime >= ts })
}

// QueueInfo describes one queue for accounting.
type QueueInfo struct {
	Topic    string
	QueueID  int
	Min, Max int64
}

// Queues lists every queue with its offsets, by topic and queue id.
func (s *Store) Queues() []QueueInfo {
	qs := s.allQueues()
	out := make([]QueueInfo, 0, len(qs))
	for _, q := range qs {
		out = append(out, QueueInfo{Topic: q.topic, QueueID: q.id, Min: q.min.Load(), Max: q.max.Load()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].QueueID < out[j].QueueID
	})
	return out
}

// LogStats describes the commit log.
type LogStats struct {
	Min, Written, Flushed, Indexed int64
	Segments                       int
	Flushes                        int64         // fsync rounds of the log so far
	FlushTime                      time.Duration // time spent in them
	// Writes counts the log's writes to its files (one per write buffer
	// a commit writes): appends per write is how well group commit works.
	Writes int64
	// FlushHistogram counts the rounds by duration: element i counts those
	// that took at most FlushBuckets[i] (and more than the bucket before);
	// the last element counts the rest.
	FlushHistogram [len(FlushBuckets) + 1]int64
	// AppendedMessages and AppendedBytes count the records appended since
	// Open, and their encoded size.
	AppendedMessages, AppendedBytes int64
}

// LastSegment is the first log offset of the segment appends go to: the
// one retention never deletes.
func (s *Store) LastSegment() int64 {
	segs := s.log.segments()
	return segs[len(segs)-1].base
}

// Stats returns the commit log's offsets and counters.
func (s *Store) Stats() LogStats {
	s.flushMu.Lock()
	flushed := s.flushed
	s.flushMu.Unlock()
	st := LogStats{Min: s.log.minOffset(), Written: s.written.Load(), Flushed: flushed,
		Indexed: s.dispatched.Load(), Segments: len(s.log.segments()),
		Flushes: s.flushes.Load(), Writes: s.writes.Load(), FlushTime: time.Duration(s.flushNanos.Load()),
		AppendedMessages: s.appendedMsgs.Load(), AppendedBytes: s.appendedBytes.Load()}
	for i := range s.flushHist {
		st.FlushHistogram[i] = s.flushHist[i].Load()
	}
	return st
}
