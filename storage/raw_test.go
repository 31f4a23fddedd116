package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// copyLog copies src's log from dst's end to src's end through ReadRaw and
// AppendRaw, in chunks of at most max bytes.
func copyLog(t *testing.T, src, dst *Store, max int) {
	t.Helper()
	off := dst.EndOffset()
	for {
		b, next, err := src.ReadRaw(off, max)
		if err != nil {
			t.Fatalf("ReadRaw(%d): %v", off, err)
		}
		if b == nil {
			if next != off {
				t.Fatalf("ReadRaw(%d) at the end returned next %d", off, next)
			}
			return
		}
		if err := dst.AppendRaw(off, b); err != nil {
			t.Fatalf("AppendRaw(%d, %d bytes): %v", off, len(b), err)
		}
		if got := dst.EndOffset(); got != next {
			t.Fatalf("after AppendRaw at %d: end %d, ReadRaw said next %d", off, got, next)
		}
		off = next
	}
}

// sameStores checks that b serves exactly a's messages: every queue with
// the same offsets, every message with the same log offset, id and record.
func sameStores(t *testing.T, a, b *Store) {
	t.Helper()
	if a.EndOffset() != b.EndOffset() {
		t.Fatalf("end %d vs %d", a.EndOffset(), b.EndOffset())
	}
	qa, qb := a.Queues(), b.Queues()
	if fmt.Sprint(qa) != fmt.Sprint(qb) {
		t.Fatalf("queues differ:\n%v\n%v", qa, qb)
	}
	for _, q := range qa {
		for off := q.Min; off < q.Max; {
			ra, err := a.Read(q.Topic, q.QueueID, off, ReadOptions{MaxCount: 64})
			if err != nil {
				t.Fatal(err)
			}
			rb, err := b.Read(q.Topic, q.QueueID, off, ReadOptions{MaxCount: 64})
			if err != nil {
				t.Fatal(err)
			}
			if len(ra.Messages) != len(rb.Messages) || ra.Next != rb.Next {
				t.Fatalf("%s/%d at %d: %d messages vs %d", q.Topic, q.QueueID, off, len(ra.Messages), len(rb.Messages))
			}
			for i := range ra.Messages {
				ma, mb := ra.Messages[i], rb.Messages[i]
				if fmt.Sprint(ma) != fmt.Sprint(mb) || a.MessageID(ma.LogOffset) != b.MessageID(mb.LogOffset) {
					t.Fatalf("%s/%d offset %d differs:\n%+v\n%+v", q.Topic, q.QueueID, ma.QueueOffset, ma, mb)
				}
			}
			off = ra.Next
		}
	}
	ka, _ := a.LookupKey("even", 1000)
	kb, _ := b.LookupKey("even", 1000)
	if len(ka) != len(kb) {
		t.Fatalf("key index: %d vs %d hits", len(ka), len(kb))
	}
}

// sameFiles checks that the segment files hold the same bytes.
func sameFiles(t *testing.T, a, b *Store) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(a.Dir(), "commitlog"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fa, _ := os.ReadFile(filepath.Join(a.Dir(), "commitlog", e.Name()))
		fb, err := os.ReadFile(filepath.Join(b.Dir(), "commitlog", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		n := min(len(fa), len(fb))
		if !bytes.Equal(fa[:n], fb[:n]) || !allZero(fa[n:]) || !allZero(fb[n:]) {
			t.Fatalf("segment %s differs", e.Name())
		}
	}
}

// appendSeq appends genMessage(i, 3, 2, maxBody) for i in [from, from+n).
func appendSeq(t *testing.T, s *Store, from, n, maxBody int) {
	t.Helper()
	appendKept(t, s, from, n, maxBody)
}

func TestRawCopyIsByteForByte(t *testing.T) {
	master := openTest(t, t.TempDir(), testOptions(t))
	dir := t.TempDir()
	replica := openTest(t, dir, testOptions(t))
	if err := replica.SetLogID(master.LogID()); err != nil {
		t.Fatal(err)
	}
	// Bodies up to 12 KiB in 64 KiB segments: many blanks and short tails.
	appendSeq(t, master, 0, 300, 12<<10)
	copyLog(t, master, replica, 20<<10)
	appendSeq(t, master, 300, 200, 12<<10)
	copyLog(t, master, replica, 1) // one record a chunk
	waitIndexed(t, master)
	waitIndexed(t, replica)
	sameStores(t, master, replica)
	sameFiles(t, master, replica)

	// Reopened, the copy serves the same and appends where the master would.
	replica.Close()
	replica = openTest(t, dir, testOptions(t))
	sameStores(t, master, replica)
	m1, m2 := genMessage(900, 3, 2, 100), genMessage(900, 3, 2, 100)
	if err := master.Append(context.Background(), m1); err != nil {
		t.Fatal(err)
	}
	if err := replica.Append(context.Background(), m2); err != nil {
		t.Fatal(err)
	}
	if m1.LogOffset != m2.LogOffset || m1.QueueOffset != m2.QueueOffset {
		t.Fatalf("next append: master %d/%d, copy %d/%d", m1.LogOffset, m1.QueueOffset, m2.LogOffset, m2.QueueOffset)
	}
}

func TestAppendRawRefusesBadChunks(t *testing.T) {
	master := openTest(t, t.TempDir(), testOptions(t))
	replica := openTest(t, t.TempDir(), testOptions(t))
	appendSeq(t, master, 0, 20, 1000)
	b, _, err := master.ReadRaw(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func([]byte) (int64, []byte){
		"flipped byte":   func(b []byte) (int64, []byte) { b[len(b)-3] ^= 1; return 0, b },
		"cut short":      func(b []byte) (int64, []byte) { return 0, b[:len(b)-5] },
		"wrong offset":   func(b []byte) (int64, []byte) { return 0, b[10:] },
		"not at the end": func(b []byte) (int64, []byte) { return 100, b },
		"zeros":          func(b []byte) (int64, []byte) { return 0, make([]byte, 100) },
	}
	for name, f := range cases {
		off, chunk := f(bytes.Clone(b))
		if err := replica.AppendRaw(off, chunk); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
		if replica.EndOffset() != 0 {
			t.Fatalf("%s: wrote up to %d", name, replica.EndOffset())
		}
	}
	// Records of a queue must continue its offsets.
	if err := replica.AppendRaw(0, b); err != nil {
		t.Fatal(err)
	}
	if err := replica.AppendRaw(replica.EndOffset(), b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a chunk replayed at the end: %v", err)
	}
}

func TestReadRawRange(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	appendSeq(t, s, 0, 5, 100)
	waitIndexed(t, s)
	if _, _, err := s.ReadRaw(s.EndOffset()+1, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("past the end: %v", err)
	}
	b, next, err := s.ReadRaw(s.EndOffset(), 100)
	if b != nil || next != s.EndOffset() || err != nil {
		t.Fatalf("at the end: %d bytes, next %d, %v", len(b), next, err)
	}
	b, next, err = s.ReadRaw(0, 1)
	if err != nil || len(b) == 0 || next != int64(len(b)) {
		t.Fatalf("one record: %d bytes, next %d, %v", len(b), next, err)
	}
}

func TestTruncateOpenStore(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions(t))
	appendSeq(t, s, 0, 300, 2000)
	waitIndexed(t, s)
	cut := s.EndOffset()
	before := s.Queues()
	appendSeq(t, s, 300, 100, 2000)
	if err := s.Truncate(cut + 1); err == nil {
		t.Fatal("a cut inside a record was accepted")
	}
	if err := s.Truncate(cut); err != nil {
		t.Fatal(err)
	}
	if s.EndOffset() != cut || fmt.Sprint(s.Queues()) != fmt.Sprint(before) {
		t.Fatalf("after the cut: end %d (want %d), queues %v (want %v)", s.EndOffset(), cut, s.Queues(), before)
	}
	// Appending again gives the cut-off messages' offsets to new ones.
	m := genMessage(300, 3, 2, 2000)
	if err := s.Append(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if m.LogOffset != cut {
		t.Fatalf("next append at %d, want %d", m.LogOffset, cut)
	}
	appendSeq(t, s, 301, 99, 2000)
	waitIndexed(t, s)
	// The truncated and re-appended store equals a copy that never diverged,
	// before and after it is reopened.
	ref := openTest(t, t.TempDir(), testOptions(t))
	if err := ref.SetLogID(s.LogID()); err != nil {
		t.Fatal(err)
	}
	copyLog(t, s, ref, 64<<10)
	waitIndexed(t, ref)
	sameStores(t, s, ref)
	s.Close()
	s = openTest(t, dir, testOptions(t))
	sameStores(t, s, ref)
}

func TestFenceAndGate(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	fenced := fmt.Errorf("%w: lease ran out", ErrFenced)
	s.Fence(fenced)
	if err := s.Append(context.Background(), genMessage(0, 1, 1, 10)); !errors.Is(err, ErrFenced) {
		t.Fatalf("fenced append: %v", err)
	}
	// Fence leaves the copy's door open (a replica is fenced and copies);
	// FenceRaw closes it.
	if err := s.AppendRaw(0, nil); err != nil {
		t.Fatalf("raw append under Fence: %v", err)
	}
	s.FenceRaw(fenced)
	if err := s.AppendRaw(0, []byte{1}); !errors.Is(err, ErrFenced) {
		t.Fatalf("fenced raw append: %v", err)
	}
	s.FenceRaw(nil)
	s.Fence(nil)
	g := &testGate{release: make(chan error)}
	s.SetAckGate(g)
	done := make(chan error)
	go func() { done <- s.Append(context.Background(), genMessage(0, 1, 1, 10)) }()
	select {
	case err := <-done:
		t.Fatalf("append returned before the gate: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	want := errors.New("no replicas")
	g.release <- want
	if err := <-done; err != want {
		t.Fatalf("gated append: %v", err)
	}
	s.SetAckGate(nil)
	if err := s.Append(context.Background(), genMessage(1, 1, 1, 10)); err != nil {
		t.Fatal(err)
	}
}

type testGate struct{ release chan error }

func (g *testGate) Wait(ctx context.Context, end int64) error { return <-g.release }

func TestWaitEnd(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	ch := s.WaitEnd(0)
	select {
	case <-ch:
		t.Fatal("woke with nothing appended")
	default:
	}
	appendSeq(t, s, 0, 1, 10)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("not woken by an append")
	}
	select {
	case <-s.WaitEnd(0):
	default:
		t.Fatal("a wait for an offset already passed blocks")
	}
}
