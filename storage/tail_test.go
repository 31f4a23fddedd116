package storage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// testEntries encodes entries first..first+n-1 of a queue, each distinct.
func testEntries(first, n int64) []byte {
	b := make([]byte, n*entrySize)
	for i := range n {
		putEntry(b[i*entrySize:], entry{logOffset: 1000 * (first + i), size: int32(100 + first + i), subjectHash: uint32(first + i), storeTime: 7 * (first + i)})
	}
	return b
}

// openTestQueue opens queue t/0 in dir with perFile entries a file, closed
// when the test ends.
func openTestQueue(t *testing.T, dir string, perFile int64) *queue {
	t.Helper()
	q, err := openQueue(dir, "t", 0, perFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.close() })
	return q
}

// addAll adds entries [from, to) to q in chunks of chunk and publishes them.
func addAll(t *testing.T, q *queue, from, to, chunk int64) {
	t.Helper()
	for i := from; i < to; i += chunk {
		n := min(chunk, to-i)
		if err := q.add(i, testEntries(i, n)); err != nil {
			t.Fatal(err)
		}
		q.publish(i, i+n, nil)
	}
}

// checkReads reads every range [from, from+n) of q within [lo, max) and
// compares it with the entries added.
func checkReads(t *testing.T, q *queue, lo int64) {
	t.Helper()
	hi := q.max.Load()
	for from := lo; from < hi; from += 7 {
		for _, n := range []int64{1, 13, 150, hi - from} {
			buf := make([]byte, n*entrySize)
			got, err := q.read(from, buf)
			if err != nil {
				t.Fatal(err)
			}
			if got != int(n) {
				t.Fatalf("read %d entries from %d, want %d", got, from, n)
			}
			want := testEntries(from, n)
			if end := from + n; end > hi { // past max: zero entries
				clear(want[(hi-from)*entrySize:])
			}
			if !bytes.Equal(buf, want) {
				t.Fatalf("entries [%d,%d) differ (files up to %d, tail of %d)", from, from+n, q.fileMax, len(q.tail)/entrySize)
			}
		}
	}
}

// Reads served from the tail equal reads from the files, across file
// boundaries and across fileMax.
func TestQueueTailReadsEqualFileReads(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 100)
	addAll(t, q, 0, 250, 1)
	if q.fileMax != 0 || len(q.tail) != 250*entrySize {
		t.Fatalf("250 entries: files up to %d, tail of %d entries; want all in the tail", q.fileMax, len(q.tail)/entrySize)
	}
	if st, err := os.Stat(filepath.Join(dir, queueFileName(0))); err == nil {
		t.Fatalf("a file of %d bytes exists before the tail was written", st.Size())
	}
	checkReads(t, q, 0)
	if err := q.writeTail(); err != nil {
		t.Fatal(err)
	}
	if q.fileMax != 250 || q.tail != nil {
		t.Fatalf("after writeTail: files up to %d, tail %d entries", q.fileMax, len(q.tail)/entrySize)
	}
	addAll(t, q, 250, 330, 9) // part in the files, part in the tail
	checkReads(t, q, 0)
	if err := q.writeTail(); err != nil {
		t.Fatal(err)
	}
	checkReads(t, q, 0)
	// The files alone hold every entry: a reopened queue reads the same.
	q.close()
	q = openTestQueue(t, dir, 100)
	if q.max.Load() != 330 || q.fileMax != 330 {
		t.Fatalf("reopened: max %d, files up to %d; want 330", q.max.Load(), q.fileMax)
	}
	checkReads(t, q, 0)
}

// The tail never holds more than tailMax entries nor keeps a bigger buffer:
// what would pass the bound is written to the files by add itself, and a
// batch bigger than the bound goes straight to the files.
func TestQueueTailBound(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), 1000)
	for i := int64(0); i < 5000; i += 3 {
		addAll(t, q, i, i+3, 3)
		if len(q.tail) > tailMax*entrySize || cap(q.tail) > tailMax*entrySize {
			t.Fatalf("after %d entries: tail of %d bytes, capacity %d; bound %d", i+3, len(q.tail), cap(q.tail), tailMax*entrySize)
		}
	}
	if q.fileMax < 5001-tailMax {
		t.Fatalf("files hold entries up to %d of 5001; the tail holds at most %d", q.fileMax, tailMax)
	}
	addAll(t, q, 5001, 5001+2*tailMax, 2*tailMax)
	if q.fileMax != 5001+2*tailMax || len(q.tail) != 0 {
		t.Fatalf("a batch of %d entries: files up to %d, tail of %d entries; want it all in the files", 2*tailMax, q.fileMax, len(q.tail)/entrySize)
	}
	checkReads(t, q, 4900)
}

// A gap in the queue offsets writes the tail and leaves holes.
func TestQueueTailGap(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), 100)
	addAll(t, q, 0, 50, 5)
	addAll(t, q, 70, 120, 5)
	buf := make([]byte, 120*entrySize)
	if _, err := q.read(0, buf); err != nil {
		t.Fatal(err)
	}
	want := append(append(testEntries(0, 50), make([]byte, 20*entrySize)...), testEntries(70, 50)...)
	if !bytes.Equal(buf, want) || q.fileMax != 70 {
		t.Fatalf("entries around a gap differ (files up to %d, want 70)", q.fileMax)
	}
}

// truncate cuts the tail alone when the cut is in it, the files and the tail
// when it is below; trimBefore writes the tail before it removes files.
func TestQueueTailTruncateAndTrim(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 100)
	addAll(t, q, 0, 150, 10)
	if err := q.writeTail(); err != nil {
		t.Fatal(err)
	}
	addAll(t, q, 150, 230, 10)

	if err := q.truncate(200); err != nil {
		t.Fatal(err)
	}
	if q.max.Load() != 200 || q.fileMax != 150 || len(q.tail) != 50*entrySize {
		t.Fatalf("cut in the tail: max %d, files up to %d, tail %d entries", q.max.Load(), q.fileMax, len(q.tail)/entrySize)
	}
	if st, err := os.Stat(filepath.Join(dir, queueFileName(100))); err != nil || st.Size() != 50*entrySize {
		t.Fatalf("a cut in the tail changed the files: %v", err)
	}
	checkReads(t, q, 0)
	addAll(t, q, 200, 240, 10) // goes on after the cut
	checkReads(t, q, 0)

	if err := q.truncate(120); err != nil {
		t.Fatal(err)
	}
	if q.max.Load() != 120 || q.fileMax != 120 || len(q.tail) != 0 {
		t.Fatalf("cut in the files: max %d, files up to %d, tail %d entries", q.max.Load(), q.fileMax, len(q.tail)/entrySize)
	}
	if st, err := os.Stat(filepath.Join(dir, queueFileName(100))); err != nil || st.Size() != 20*entrySize {
		t.Fatalf("file after the cut: %v, %v", st, err)
	}
	addAll(t, q, 120, 260, 10)
	checkReads(t, q, 0)

	// Entries 150..260 are in the tail; trimming past the first file
	// writes them, so no file is made again after the trim removed it.
	if err := q.trimBefore(130); err != nil {
		t.Fatal(err)
	}
	if len(q.tail) != 0 || q.fileMax != 260 {
		t.Fatalf("trim: files up to %d, tail %d entries; want the tail written", q.fileMax, len(q.tail)/entrySize)
	}
	if _, err := os.Stat(filepath.Join(dir, queueFileName(0))); !os.IsNotExist(err) {
		t.Fatalf("the file below the new minimum is still there: %v", err)
	}
	checkReads(t, q, 130)
	addAll(t, q, 260, 270, 10)
	if _, err := os.Stat(filepath.Join(dir, queueFileName(0))); !os.IsNotExist(err) {
		t.Fatalf("the file below the new minimum was made again: %v", err)
	}
}

// A checkpoint writes every queue's tail before it fsyncs: the files alone
// hold every entry up to the offset it records.
func TestCheckpointWritesTails(t *testing.T) {
	dir := t.TempDir()
	s, sent := checkpointed(t, dir, testOptions(t), 600, 300)
	_, cp, ok, err := openCheckpoint(filepath.Join(dir, "index"))
	if err != nil || !ok || cp.offset != s.EndOffset() {
		t.Fatalf("checkpoint %+v (valid %v, %v), want offset %d", cp, ok, err, s.EndOffset())
	}
	for _, m := range sent {
		q, err := s.queue(m.Topic, m.QueueID, false)
		if err != nil || q == nil {
			t.Fatalf("%s/%d: no queue (%v)", m.Topic, m.QueueID, err)
		}
		if q.tail != nil {
			t.Fatalf("%s/%d: %d entries still only in memory after the checkpoint", q.topic, q.id, len(q.tail)/entrySize)
		}
		var buf [entrySize]byte
		if _, err := q.readFiles(m.QueueOffset, buf[:]); err != nil {
			t.Fatal(err)
		}
		if e := getEntry(buf[:]); e.logOffset != m.LogOffset || int(e.size) != m.Size {
			t.Fatalf("%s/%d entry %d in the files: %+v, want log offset %d size %d", q.topic, q.id, m.QueueOffset, e, m.LogOffset, m.Size)
		}
	}
}

// checkpointed opens a store in dir with o and no checkpoint but the
// test's, appends n messages of up to maxBody bytes (appendKept), and
// checkpoints once they are indexed.
func checkpointed(t *testing.T, dir string, o Options, n, maxBody int) (*Store, []*Message) {
	t.Helper()
	o.FlushInterval = time.Hour
	s := openTest(t, dir, o)
	sent := appendKept(t, s, 0, n, maxBody)
	waitIndexed(t, s)
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	return s, sent
}

// appendKept is appendSeq returning the messages, with their offsets.
func appendKept(t *testing.T, s *Store, from, n, maxBody int) []*Message {
	t.Helper()
	var out []*Message
	for i := from; i < from+n; i++ {
		m := genMessage(i, 3, 2, maxBody)
		if err := s.Append(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// abandon stops s as a kill -9 would: what it holds in memory (the queue
// tails) is lost, no checkpoint nor clean marker is written.
func abandon(t *testing.T, s *Store) {
	t.Helper()
	s.closeOnce.Do(func() {
		s.refuseAppends()
		close(s.stop)
		s.wg.Wait()
		for _, q := range s.allQueues() {
			q.tailMu.Lock()
			q.tail = nil
			q.tailMu.Unlock()
		}
		s.closeFiles()
	})
}

// A crash loses the queue tails: recovery re-indexes from the checkpoint
// and every message reads back by its queue offset, in queues whose files
// end at the checkpoint, before it, and past it (the dispatcher wrote a
// full tail).
func TestCrashLosesTailsRecoveryRebuilds(t *testing.T) {
	for _, mode := range []FlushMode{FlushAsync, FlushSync} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			o := testOptions(t)
			o.FlushMode = mode
			s, sent := checkpointed(t, dir, o, 300, 200)
			// 1,500 more to one queue (past tailMax: the dispatcher writes
			// some) and a few to the others, which stay in their tails.
			ctx := context.Background()
			for seq := 300; seq < 1800; seq++ {
				m := genMessage(seq, 3, 2, 200)
				if seq%50 != 0 {
					m.Topic, m.QueueID = "topic-0", 0
				}
				if err := s.Append(ctx, m); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, m)
			}
			waitIndexed(t, s)
			q, _ := s.queue("topic-0", 0, false)
			if q.fileMax == q.max.Load() {
				t.Fatalf("topic-0/0: files up to %d, all entries; want a tail in memory", q.fileMax)
			}
			abandon(t, s)

			s = openTest(t, dir, o)
			byQueue := map[string][]*Message{}
			for _, m := range sent {
				k := fmt.Sprintf("%s/%d", m.Topic, m.QueueID)
				byQueue[k] = append(byQueue[k], m)
			}
			for k, want := range byQueue {
				if _, max := s.Offsets(want[0].Topic, want[0].QueueID); max != int64(len(want)) {
					t.Fatalf("%s: max %d after the crash, want %d", k, max, len(want))
				}
				for _, m := range want {
					res, err := s.Read(m.Topic, m.QueueID, m.QueueOffset, ReadOptions{MaxCount: 1})
					if err != nil || len(res.Messages) != 1 {
						t.Fatalf("%s offset %d: %d messages, %v", k, m.QueueOffset, len(res.Messages), err)
					}
					if err := sameMessage(&res.Messages[0], m); err != nil || res.Messages[0].LogOffset != m.LogOffset {
						t.Fatalf("%s offset %d: %v (log offset %d, want %d)", k, m.QueueOffset, err, res.Messages[0].LogOffset, m.LogOffset)
					}
				}
			}
		})
	}
}

// A commit of a small write indexes it itself: when an async Append
// returns, having written its record on its own goroutine, the queue's
// max already covers it and the dispatcher was not woken.
func TestSmallCommitIndexesInline(t *testing.T) {
	o := testOptions(t)
	o.FlushInterval = time.Hour // no flusher nor checkpointer commits
	s := openTest(t, t.TempDir(), o)
	for seq := range 200 {
		m := genMessage(seq, 2, 2, 300)
		if err := s.Append(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if _, max := s.Offsets(m.Topic, m.QueueID); max != m.QueueOffset+1 {
			t.Fatalf("append %d: queue max %d when Append returned, want %d", seq, max, m.QueueOffset+1)
		}
		if len(s.dispatchKick) != 0 {
			t.Fatalf("append %d: the dispatcher was woken for a small commit", seq)
		}
	}
}

// Readers concurrent with the indexer adding entries and a checkpointer
// writing the tail always read what was added.
func TestQueueTailConcurrentReads(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), 100)
	const n = 20000
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the checkpointer
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := q.writeTail(); err != nil {
				t.Error(err)
				return
			}
			runtime.Gosched()
		}
	}()
	go func() { // a reader keeping up
		defer wg.Done()
		buf := make([]byte, 64*entrySize)
		for from := int64(0); from < n; {
			hi := q.max.Load()
			if hi == from {
				runtime.Gosched()
				continue
			}
			k := min(hi-from, 64)
			if _, err := q.read(from, buf[:k*entrySize]); err != nil {
				t.Error(err)
				return
			}
			if !bytes.Equal(buf[:k*entrySize], testEntries(from, k)) {
				t.Errorf("entries [%d,%d) differ", from, from+k)
				return
			}
			from += k
		}
	}()
	addAll(t, q, 0, n, 5)
	close(done)
	wg.Wait()
}

// A queue's sync fsyncs the files written since the last one, and its
// directory only after a file was made or removed; a failed sync leaves
// all of it for the next.
func TestQueueSyncsWhatChanged(t *testing.T) {
	q := openTestQueue(t, t.TempDir(), 100)
	pending := q.pending.marked
	sync := func() {
		t.Helper()
		if err := q.sync(); err != nil {
			t.Fatal(err)
		}
		if starts, dir := pending(); len(starts) != 0 || dir {
			t.Fatalf("after a sync: files %v and the directory (%v) still to sync", starts, dir)
		}
	}
	expect := func(what string, want []int64, wantDir bool) {
		t.Helper()
		if err := q.writeTail(); err != nil {
			t.Fatal(err)
		}
		if starts, dir := pending(); !slices.Equal(starts, want) || dir != wantDir {
			t.Fatalf("%s: files %v and the directory (%v) to sync, want %v and %v", what, starts, dir, want, wantDir)
		}
	}

	addAll(t, q, 0, 50, 10)
	expect("a new file", []int64{0}, true)
	sync()
	addAll(t, q, 50, 60, 10)
	expect("more in the same file", []int64{0}, false)
	sync()
	sync() // nothing written: nothing to sync
	addAll(t, q, 60, 150, 10)
	expect("into a new file", []int64{0, 100}, true)

	q.mu.RLock()
	q.files[100].Close() // its fsync fails
	q.mu.RUnlock()
	if err := q.sync(); err == nil {
		t.Fatal("sync of a closed file succeeded")
	}
	expect("after a failed sync", []int64{0, 100}, true)
}
