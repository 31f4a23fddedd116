package storage

import (
	"fmt"
	"os"
	"sort"
	"sync"
)

// commitLog is the ordered list of segments. The list is changed by the
// writer (a new segment at the end, under the store's write lock) and by
// retention and recovery (segments removed); mu guards it.
type commitLog struct {
	dir     string
	segSize int64
	chunk   int64
	limit   int // the largest record size framing accepts

	mu     sync.RWMutex
	segs   []*segment
	active *segment // the last segment; the writer's copy, under the store's write lock
}

func openCommitLog(dir string, segSize int64) (*commitLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	l := &commitLog{dir: dir, segSize: segSize, chunk: min(segSize, 64<<20), limit: maxRecordSize(maxMessageSizeLimit)}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	var bases []int64
	for _, e := range ents {
		if b, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			bases = append(bases, b)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	for i, b := range bases {
		capacity := segSize
		if i+1 < len(bases) {
			capacity = bases[i+1] - b
		}
		seg, err := openSegment(dir, b, capacity, l.chunk)
		if err != nil {
			l.close()
			return nil, err
		}
		if seg.end() != b+capacity {
			l.close()
			seg.close()
			return nil, fmt.Errorf("storage: segment %s is %d bytes, more than the %d to the next segment", seg.path, seg.cap, capacity)
		}
		l.segs = append(l.segs, seg)
	}
	if len(l.segs) == 0 {
		if _, err := l.roll(0); err != nil {
			return nil, err
		}
	}
	l.active = l.segs[len(l.segs)-1]
	return l, nil
}

// roll adds a new segment starting at base. Caller holds the write lock (or
// is recovering, alone).
func (l *commitLog) roll(base int64) (*segment, error) {
	seg, err := openSegment(l.dir, base, l.segSize, l.chunk)
	if err != nil {
		return nil, err
	}
	if err := syncDir(l.dir); err != nil {
		seg.close()
		return nil, fmt.Errorf("storage: sync %s: %w", l.dir, err)
	}
	l.mu.Lock()
	l.segs = append(l.segs, seg)
	l.mu.Unlock()
	l.active = seg
	return seg, nil
}

// reserve makes room for a record of n bytes at log position pos, the end of
// the log, and returns the segment and the position where it goes: pos, or
// the start of a new segment when the record does not fit in the last one.
// Then blank is the size of the blank record the caller must write at pos
// (0 when the rest is too small for one), also when err is set: the last
// segment is sealed even if the new one cannot take the record. Caller
// holds the write lock.
func (l *commitLog) reserve(pos int64, n int) (seg *segment, at int64, blank int, err error) {
	seg = l.active
	if pos < seg.base {
		// An earlier roll sealed the previous segment but its record then
		// failed (a full disk): the log goes on in the new segment.
		pos = seg.base
	}
	rel := pos - seg.base
	if rel+int64(n) > seg.cap {
		if rest := seg.cap - rel; rest >= headerSize {
			if err := seg.ensure(rel + headerSize); err != nil {
				return nil, 0, 0, err
			}
			blank = int(rest)
		}
		next, err := l.roll(seg.end())
		if err != nil {
			return nil, 0, blank, err
		}
		seg, pos, rel = next, next.base, 0
	}
	if err := seg.ensure(rel + int64(n)); err != nil {
		return nil, 0, blank, err
	}
	return seg, pos, blank, nil
}

// find returns the segment holding log offset off, or nil.
func (l *commitLog) find(off int64) *segment {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].end() > off })
	if i == len(l.segs) || off < l.segs[i].base {
		return nil
	}
	return l.segs[i]
}

// isLast reports whether seg is the last segment, the one appends go to.
func (l *commitLog) isLast(seg *segment) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.segs[len(l.segs)-1] == seg
}

// minOffset is the first log offset still stored.
func (l *commitLog) minOffset() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.segs[0].base
}

// segments returns a snapshot of the segment list.
func (l *commitLog) segments() []*segment {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return append([]*segment(nil), l.segs...)
}

// read copies the record at off into a new buffer, checking its frame and
// checksum. written is the end of the log's complete records: nothing at or
// past it is read.
func (l *commitLog) read(off, written int64) ([]byte, error) {
	return l.readInto(nil, off, written)
}

// readInto is read with the copy appended to arena when it has room; the
// record is the returned slice either way.
func (l *commitLog) readInto(arena *[]byte, off, written int64) ([]byte, error) {
	r := logReader{l: l, written: written}
	defer r.release()
	return r.read(arena, off)
}

// logReader reads records, keeping hold of the segment it is in from one
// read to the next (a batch reads one segment mostly); release lets go.
type logReader struct {
	l       *commitLog
	written int64
	seg     *segment // read-locked while set
}

func (r *logReader) release() {
	if r.seg != nil {
		r.seg.mu.RUnlock()
		r.seg = nil
	}
}

// read is commitLog.readInto through the reader.
func (r *logReader) read(arena *[]byte, off int64) ([]byte, error) {
	if off >= r.written {
		return nil, fmt.Errorf("%w: no record at log offset %d", ErrNotFound, off)
	}
	if seg := r.seg; seg == nil || off < seg.base || off >= seg.end() {
		r.release()
		if seg = r.l.find(off); seg == nil {
			return nil, fmt.Errorf("%w: no record at log offset %d", ErrNotFound, off)
		}
		seg.mu.RLock()
		r.seg = seg
	}
	seg := r.seg
	if seg.closed {
		return nil, fmt.Errorf("%w: log offset %d was deleted by retention", ErrNotFound, off)
	}
	rel := off - seg.base
	kind, size, reason := frame(seg.readable(rel, r.written), int(seg.cap-rel), r.l.limit)
	switch kind {
	case frameRecord:
		var rec []byte
		if arena != nil && cap(*arena)-len(*arena) >= size {
			n := len(*arena)
			*arena = (*arena)[:n+size]
			rec = (*arena)[n : n+size : n+size]
		} else {
			rec = make([]byte, size)
		}
		copy(rec, seg.data[rel:])
		return rec, nil
	case frameBad:
		return nil, fmt.Errorf("%w: log offset %d in %s: %s", ErrCorrupt, off, seg.path, reason)
	default:
		return nil, fmt.Errorf("%w: no record at log offset %d", ErrNotFound, off)
	}
}

// sync fsyncs every segment holding bytes in [from, to).
func (l *commitLog) sync(from, to int64) error {
	for _, seg := range l.segments() {
		if seg.end() <= from || seg.base >= to {
			continue
		}
		if err := seg.sync(); err != nil {
			return err
		}
	}
	return nil
}

// dropFront closes and deletes the first segment (retention). The last
// segment is never dropped.
func (l *commitLog) dropFront() (*segment, error) {
	l.mu.Lock()
	if len(l.segs) < 2 {
		l.mu.Unlock()
		return nil, nil
	}
	seg := l.segs[0]
	l.segs = l.segs[1:]
	l.mu.Unlock()
	if err := seg.close(); err != nil {
		return seg, err
	}
	if err := os.Remove(seg.path); err != nil {
		return seg, fmt.Errorf("storage: remove %s: %w", seg.path, err)
	}
	return seg, syncDir(l.dir)
}

// dropBack closes and deletes every segment starting at or after base
// (recovery, after a corrupt record).
func (l *commitLog) dropBack(base int64) error {
	l.mu.Lock()
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base >= base })
	gone := l.segs[i:]
	l.segs = l.segs[:i]
	l.active = l.segs[len(l.segs)-1]
	l.mu.Unlock()
	for _, seg := range gone {
		seg.close()
		if err := os.Remove(seg.path); err != nil {
			return fmt.Errorf("storage: remove %s: %w", seg.path, err)
		}
	}
	return syncDir(l.dir)
}

func (l *commitLog) close() error {
	var first error
	for _, seg := range l.segs {
		if err := seg.close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
