package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ferrymq/ferry/internal/rawio"
)

// errIndexDamaged: an index file is not what the writer leaves; recovery
// rebuilds the indexes from the log.
var errIndexDamaged = errors.New("storage: index damaged")

// entrySize is the size of one consume-queue index entry:
//
//	0  8 log offset of the record
//	8  4 record size
//	12 4 subject hash
//	16 8 store time, unix nanoseconds
//
// An all-zero entry is a hole (never written) and is skipped by readers.
const entrySize = 24

type entry struct {
	logOffset   int64
	size        int32
	subjectHash uint32
	storeTime   int64
}

func putEntry(b []byte, e entry) {
	binary.BigEndian.PutUint64(b[0:], uint64(e.logOffset))
	binary.BigEndian.PutUint32(b[8:], uint32(e.size))
	binary.BigEndian.PutUint32(b[12:], e.subjectHash)
	binary.BigEndian.PutUint64(b[16:], uint64(e.storeTime))
}

func getEntry(b []byte) entry {
	return entry{
		logOffset:   int64(binary.BigEndian.Uint64(b[0:])),
		size:        int32(binary.BigEndian.Uint32(b[8:])),
		subjectHash: binary.BigEndian.Uint32(b[12:]),
		storeTime:   int64(binary.BigEndian.Uint64(b[16:])),
	}
}

// tailMax is how many entries a queue keeps in memory before the dispatcher
// writes them to its files: 1,024 entries, 24 KiB. A queue read at the rate
// it is written (the common case) is served from memory with no system call,
// and the dispatcher writes it with one pwrite per 1,024 messages; the
// checkpointer writes the rest every FlushInterval. It bounds what a queue
// holds in memory, and a thousand busy queues hold at most 24 MiB.
const tailMax = 1024

// queue is the consume-queue index of one (topic, queue id): entry i is the
// message at queue offset i, so a queue offset is an array index. Entries
// live in files of perFile entries named by their first index. The index is
// derived data: the dispatcher writes it from the commit log, and recovery
// rebuilds it from there.
//
// The newest entries, from fileMax to max (and any added but not yet
// published), are held in memory, in tail, until writeTail writes them to
// the files: when the tail would pass tailMax entries (the dispatcher), at
// a checkpoint and at Close (sync), before retention removes files
// (trimBefore). A crash loses the tail, and nothing with it: recovery
// re-indexes the log from the checkpoint, which sync precedes.
//
// Entries are added only by whoever indexes the log, one at a time under
// Store.dispatchMu (the dispatcher, or a commit indexing its own small
// write: indexInline); it and the checkpointer write the tail to the files,
// one at a time (writeMu).
// Readers see entries [min, max).
type queue struct {
	topic   string
	id      int
	dir     string
	perFile int64

	mu    sync.RWMutex // guards files
	files map[int64]*os.File

	// writeMu is held to write the files or change the tail's extent:
	// add, writeTail, truncate, trimBefore, close.
	writeMu sync.Mutex
	// tailMu guards tail and fileMax: readers take it for reading, and
	// whoever changes them holds writeMu too.
	tailMu  sync.RWMutex
	fileMax int64  // the files hold the entries below it
	tail    []byte // encoded entries from fileMax on, at most tailMax

	min, max atomic.Int64
	pending  unsynced // what sync must make durable

	wakeMu sync.Mutex
	wake   chan struct{}      // closed when max moves; nil until someone waits
	watch  map[Waker]struct{} // woken once when max moves (Store.Watch)
}

func queueFileName(start int64) string { return fmt.Sprintf("%020d", start) }

// openQueue opens the index files in dir, creating dir if needed.
func openQueue(dir, topic string, id int, perFile int64) (*queue, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	q := &queue{topic: topic, id: id, dir: dir, perFile: perFile, files: map[int64]*os.File{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	var starts []int64
	for _, e := range ents {
		start, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || len(e.Name()) != 20 || start%perFile != 0 {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0o644)
		if err != nil {
			q.close()
			return nil, fmt.Errorf("storage: %w", err)
		}
		q.files[start] = f
		starts = append(starts, start)
	}
	if len(starts) == 0 {
		return q, nil
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	for _, start := range starts[:len(starts)-1] {
		if st, err := q.files[start].Stat(); err != nil || st.Size() != perFile*entrySize {
			q.close()
			return nil, fmt.Errorf("%w: %s/%d file %s is not full", errIndexDamaged, topic, id, queueFileName(start))
		}
	}
	last := starts[len(starts)-1]
	st, err := q.files[last].Stat()
	if err != nil {
		q.close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	n := min(st.Size()/entrySize, perFile) // a torn partial entry is dropped
	q.max.Store(last + n)
	q.fileMax = last + n
	// The first entry is the first non-hole of the first file: holes come
	// only before it (a queue whose start was trimmed or rebuilt mid-way).
	first := starts[0]
	lo, hi := first, min(first+perFile, last+n)
	var buf [entrySize]byte
	for lo < hi {
		mid := lo + (hi-lo)/2
		if _, err := q.files[first].ReadAt(buf[:], (mid-first)*entrySize); err != nil || getEntry(buf[:]).size == 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	q.min.Store(min(lo, last+n))
	return q, nil
}

// file returns the file holding index i, creating it when create is set.
func (q *queue) file(i int64, create bool) (*os.File, int64, error) {
	start := i / q.perFile * q.perFile
	q.mu.RLock()
	f := q.files[start]
	q.mu.RUnlock()
	if f != nil || !create {
		return f, start, nil
	}
	f, err := os.OpenFile(filepath.Join(q.dir, queueFileName(start)), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, start, fmt.Errorf("storage: %w", err)
	}
	q.mu.Lock()
	q.files[start] = f
	q.mu.Unlock()
	q.pending.mark(-1, true)
	return f, start, nil
}

// writeFiles stores encoded entries b starting at index first in the
// files. Caller holds writeMu.
func (q *queue) writeFiles(first int64, b []byte) error {
	for len(b) > 0 {
		f, start, err := q.file(first, true)
		if err != nil {
			return err
		}
		n := min(int64(len(b))/entrySize, start+q.perFile-first)
		_, err = rawio.WriteAt(f, b[:n*entrySize], (first-start)*entrySize)
		q.pending.mark(start, false) // also when the write failed part way
		if err != nil {
			return fmt.Errorf("storage: write index %s/%d: %w", q.topic, q.id, err)
		}
		first += n
		b = b[n*entrySize:]
	}
	return nil
}

// add appends encoded entries b, which start at index first, to the tail.
// Only whoever indexes (Store.dispatchMu). It does not publish them: see
// publish. The tail is written to the files first when b would take it
// past tailMax entries or does not continue it (a gap: the skipped entries
// read as holes), and b itself, past the tail, when it alone is more than
// tailMax entries.
func (q *queue) add(first int64, b []byte) error {
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	end := q.fileMax + int64(len(q.tail)/entrySize) // only add moves it, or truncate, both under writeMu
	if first != end || len(q.tail)+len(b) > tailMax*entrySize {
		if err := q.writeTailLocked(false); err != nil {
			return err
		}
	}
	if len(b) > tailMax*entrySize {
		if err := q.writeFiles(first, b); err != nil {
			return err
		}
		q.tailMu.Lock()
		q.fileMax = first + int64(len(b)/entrySize)
		q.tailMu.Unlock()
		return nil
	}
	q.tailMu.Lock()
	defer q.tailMu.Unlock()
	if len(q.tail) == 0 {
		q.fileMax = first
	}
	if need := len(q.tail) + len(b); need > cap(q.tail) {
		// Grown by hand so that the capacity stays within tailMax.
		grown := make([]byte, len(q.tail), min(tailMax*entrySize, max(need, 2*cap(q.tail), 16*entrySize)))
		copy(grown, q.tail)
		q.tail = grown
	}
	q.tail = append(q.tail, b...)
	return nil
}

// writeTail writes the tail to the files and drops it from memory.
func (q *queue) writeTail() error {
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	return q.writeTailLocked(true)
}

// writeTailLocked is writeTail; release frees the tail's buffer (a
// checkpoint: an idle queue then holds no memory), else it is kept for the
// next entries (the dispatcher). Caller holds writeMu, so the tail does
// not change meanwhile (it changes only under writeMu); readers read it
// under tailMu until fileMax moves past what was written.
func (q *queue) writeTailLocked(release bool) error {
	if len(q.tail) > 0 {
		if err := q.writeFiles(q.fileMax, q.tail); err != nil {
			return err
		}
	}
	q.tailMu.Lock()
	defer q.tailMu.Unlock()
	q.fileMax += int64(len(q.tail) / entrySize)
	if release {
		q.tail = nil
	} else {
		q.tail = q.tail[:0]
	}
	return nil
}

// publish makes entries up to max visible and wakes waiting readers; the
// queue's watchers are appended to woken, for the indexer to wake once it
// holds no lock (Store.wakeWatchers). A queue that was empty starts at
// first, its first written index: the queue offsets before it are holes (a
// queue rebuilt from a trimmed log).
func (q *queue) publish(first, max int64, woken []Waker) []Waker {
	if q.min.Load() == q.max.Load() && first > q.min.Load() {
		q.min.Store(first)
	}
	q.max.Store(max)
	q.wakeMu.Lock()
	if q.wake != nil {
		close(q.wake)
		q.wake = nil
	}
	for w := range q.watch {
		woken = append(woken, w)
	}
	clear(q.watch)
	q.wakeMu.Unlock()
	return woken
}

// watchAt adds w to the watchers and returns max, looked at after w was
// added, so that no growth past it goes unseen.
func (q *queue) watchAt(w Waker) int64 {
	q.wakeMu.Lock()
	if q.watch == nil {
		q.watch = make(map[Waker]struct{})
	}
	q.watch[w] = struct{}{}
	q.wakeMu.Unlock()
	return q.max.Load()
}

func (q *queue) unwatch(w Waker) {
	q.wakeMu.Lock()
	delete(q.watch, w)
	q.wakeMu.Unlock()
}

// waitCh returns a channel closed when max next moves.
func (q *queue) waitCh() <-chan struct{} {
	q.wakeMu.Lock()
	defer q.wakeMu.Unlock()
	if q.wake == nil {
		q.wake = make(chan struct{})
	}
	return q.wake
}

// read fills buf (a multiple of entrySize) with entries from index from and
// returns how many it read. Holes, files removed by retention and entries
// past the tail read as zero entries. Entries from fileMax on are copied
// from the tail, the ones below it read from the files.
func (q *queue) read(from int64, buf []byte) (int, error) {
	total := len(buf) / entrySize
	q.tailMu.RLock()
	fileMax := q.fileMax
	if from+int64(total) > fileMax {
		// Copied under the lock: once it is released the tail may be
		// written out and fileMax moved past these entries. The entries
		// below fileMax are in the files before fileMax passes them.
		lo := max(from, fileMax)
		part := buf[(lo-from)*entrySize:]
		got := 0
		if off := (lo - fileMax) * entrySize; off < int64(len(q.tail)) {
			got = copy(part, q.tail[off:])
		}
		clear(part[got:])
		buf = buf[:(lo-from)*entrySize]
	}
	q.tailMu.RUnlock()
	if n, err := q.readFiles(from, buf); err != nil {
		return n, err
	}
	return total, nil
}

// readFiles is read for entries below fileMax.
func (q *queue) readFiles(from int64, buf []byte) (int, error) {
	n := 0
	for n*entrySize < len(buf) {
		i := from + int64(n)
		f, start, err := q.file(i, false)
		if err != nil {
			return n, err
		}
		want := min(int64(len(buf)/entrySize-n), start+q.perFile-i)
		part := buf[n*entrySize : (int64(n)+want)*entrySize]
		if f == nil {
			clear(part)
			n += int(want)
			continue
		}
		got, err := f.ReadAt(part, (i-start)*entrySize)
		n += got / entrySize
		if err != nil && !errors.Is(err, io.EOF) {
			return n, fmt.Errorf("storage: read index %s/%d: %w", q.topic, q.id, err)
		}
		if int64(got) < int64(len(part)) {
			clear(part[got/entrySize*entrySize:])
			n += int(want) - got/entrySize
		}
	}
	return n, nil
}

// entryAt reads one entry.
func (q *queue) entryAt(i int64) (entry, error) {
	var buf [entrySize]byte
	if _, err := q.read(i, buf[:]); err != nil {
		return entry{}, err
	}
	return getEntry(buf[:]), nil
}

// truncate drops entries from index to on: recovery and Truncate, with the
// dispatcher stopped, and the dispatcher itself when the log is behind the
// index. Entries still in the tail are cut there, the files are cut only
// below fileMax.
func (q *queue) truncate(to int64) error {
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	q.tailMu.Lock()
	inTail := to >= q.fileMax
	if inTail {
		q.tail = q.tail[:min(int64(len(q.tail)), (to-q.fileMax)*entrySize)]
	} else {
		q.tail, q.fileMax = q.tail[:0], to
	}
	q.tailMu.Unlock()
	q.max.Store(min(q.max.Load(), to))
	q.min.Store(min(q.min.Load(), q.max.Load()))
	if inTail {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for start, f := range q.files {
		switch {
		case start >= to:
			f.Close()
			delete(q.files, start)
			q.pending.mark(-1, true)
			if err := os.Remove(filepath.Join(q.dir, queueFileName(start))); err != nil {
				return fmt.Errorf("storage: %w", err)
			}
		case to < start+q.perFile:
			q.pending.mark(start, false)
			if err := f.Truncate((to - start) * entrySize); err != nil {
				return fmt.Errorf("storage: truncate index %s/%d: %w", q.topic, q.id, err)
			}
		}
	}
	return nil
}

// trimBefore raises min to newMin and removes files wholly below it, never
// the file holding the last entry (retention). The tail is written first,
// so that the files it covers are removed with the others rather than made
// again by its next write.
func (q *queue) trimBefore(newMin int64) error {
	if newMin <= q.min.Load() {
		return nil
	}
	q.min.Store(newMin)
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	if err := q.writeTailLocked(true); err != nil {
		return err
	}
	lastStart := (q.max.Load() - 1) / q.perFile * q.perFile
	q.mu.Lock()
	defer q.mu.Unlock()
	for start, f := range q.files {
		if start+q.perFile <= newMin && start < lastStart {
			f.Close()
			delete(q.files, start)
			q.pending.mark(-1, true)
			if err := os.Remove(filepath.Join(q.dir, queueFileName(start))); err != nil {
				return fmt.Errorf("storage: %w", err)
			}
		}
	}
	return nil
}

// sync writes the tail to the files and fsyncs them if written since the
// last call: the index is then durable up to every entry added before it.
//
// It fsyncs only the files written since, and the directory only when a
// file was made or removed: at every checkpoint (each FlushInterval), a
// queue's old files and its directory were fsynced too, each holding a
// processor for the call.
func (q *queue) sync() error {
	if err := q.writeTail(); err != nil {
		return err
	}
	starts, dir := q.pending.take()
	err := q.syncFiles(starts, dir)
	if err != nil { // all of it again next time
		q.pending.restore(starts, dir)
	}
	return err
}

func (q *queue) syncFiles(starts map[int64]bool, dir bool) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	for start := range starts {
		f := q.files[start] // gone: removed since, which dir covers
		if f == nil {
			continue
		}
		if err := rawio.Sync(f); err != nil {
			return fmt.Errorf("storage: sync index %s/%d: %w", q.topic, q.id, err)
		}
	}
	if dir {
		return syncDir(q.dir)
	}
	return nil
}

// close writes the tail to the files and closes them.
func (q *queue) close() error {
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	err := q.writeTailLocked(true)
	q.mu.Lock()
	defer q.mu.Unlock()
	for start, f := range q.files {
		f.Close()
		delete(q.files, start)
	}
	return err
}
