package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// subjectFilter matches one exact subject, as a tag filter does.
type subjectFilter string

func (f subjectFilter) MatchHash(h uint32) bool { return h == SubjectHash(string(f)) }
func (f subjectFilter) Match(m *Message) bool   { return m.Subject == string(f) }

func appendN(t *testing.T, s *Store, n int, mk func(i int) *Message) []*Message {
	t.Helper()
	var out []*Message
	for i := 0; i < n; i++ {
		m := mk(i)
		if err := s.Append(context.Background(), m); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, m)
	}
	waitIndexed(t, s)
	return out
}

func TestFilteredRead(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	appendN(t, s, 300, func(i int) *Message {
		return &Message{Topic: "t", Subject: fmt.Sprintf("s%d", i%3), Body: []byte(fmt.Sprint(i))}
	})
	var got []string
	for off := int64(0); ; {
		res, err := s.Read("t", 0, off, ReadOptions{MaxCount: 7, Filter: subjectFilter("s1")})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Messages {
			got = append(got, string(m.Body))
			if m.Subject != "s1" {
				t.Fatalf("filter let %q through", m.Subject)
			}
		}
		if res.Next == off {
			break
		}
		off = res.Next
	}
	if len(got) != 100 || got[0] != "1" || got[99] != "298" {
		t.Fatalf("filtered read got %d messages (%v … %v), want 100 from 1 to 298", len(got), got[0], got[len(got)-1])
	}
}

func TestReadLimitsAndOffsets(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	appendN(t, s, 50, func(i int) *Message { return &Message{Topic: "t", QueueID: 2, Body: make([]byte, 100)} })
	res, err := s.Read("t", 2, 0, ReadOptions{MaxCount: 100, MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Messages); n == 0 || n*res.Messages[0].Size > 1000 || res.Next != int64(n) {
		t.Fatalf("MaxBytes 1000: %d messages of %d bytes, next %d", n, res.Messages[0].Size, res.Next)
	}
	res, _ = s.Read("t", 2, 0, ReadOptions{MaxCount: 1, MaxBytes: 1})
	if len(res.Messages) != 1 {
		t.Fatal("a read must return one message even if it is over MaxBytes")
	}
	var oe *OffsetError
	if _, err := s.Read("t", 2, 51, ReadOptions{}); !errors.As(err, &oe) || oe.Min != 0 || oe.Max != 50 || !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past max: %v, want an OffsetError [0, 50]", err)
	}
	if res, err := s.Read("t", 2, 50, ReadOptions{}); err != nil || len(res.Messages) != 0 || res.Next != 50 {
		t.Fatalf("read at max: %v %v", res, err)
	}
	if res, err := s.Read("nope", 0, 0, ReadOptions{}); err != nil || len(res.Messages) != 0 {
		t.Fatalf("read of a queue never written: %v %v", res, err)
	}
}

func TestOffsetForTimeAndLookups(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	var mid time.Time
	sent := appendN(t, s, 200, func(i int) *Message {
		if i == 120 {
			mid = time.Now()
		}
		return &Message{Topic: "t", Keys: []string{fmt.Sprint("order-", i%10)}, Body: []byte(fmt.Sprint(i))}
	})
	off, err := s.OffsetForTime("t", 0, mid)
	if err != nil || off < 100 || off > 120 || sent[off].StoreTime < mid.UnixNano() || (off > 0 && sent[off-1].StoreTime >= mid.UnixNano()) {
		t.Fatalf("offset for time: %d, %v", off, err)
	}
	if off, _ := s.OffsetForTime("t", 0, time.Now().Add(time.Hour)); off != 200 {
		t.Fatalf("offset for a future time: %d, want the max 200", off)
	}
	if off, _ := s.OffsetForTime("t", 0, time.Unix(0, 0)); off != 0 {
		t.Fatalf("offset for the epoch: %d, want 0", off)
	}

	m, err := s.Get(s.MessageID(sent[77].LogOffset))
	if err != nil || string(m.Body) != "77" {
		t.Fatalf("get by id: %q %v", m.Body, err)
	}
	if _, err := s.Get(MessageID(s.LogID()+1, sent[77].LogOffset)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("id from another log: %v", err)
	}
	if _, err := s.Get("zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("malformed id: %v", err)
	}
	if _, err := s.Get(s.MessageID(sent[77].LogOffset + 1)); err == nil {
		t.Fatal("an id pointing inside a record was served")
	}

	for _, reopen := range []bool{false, true} {
		if reopen {
			s.Close()
			s = openTest(t, s.Dir(), testOptions(t))
		}
		got, err := s.LookupKey("order-3", 100)
		if err != nil || len(got) != 20 {
			t.Fatalf("lookup by key (reopened %v): %d messages, %v", reopen, len(got), err)
		}
		if string(got[0].Body) != "193" || string(got[19].Body) != "3" {
			t.Fatalf("lookup by key: newest first, got %s … %s", got[0].Body, got[19].Body)
		}
		if got, _ := s.LookupKey("order-3", 5); len(got) != 5 {
			t.Fatalf("lookup limit: %d", len(got))
		}
		if got, _ := s.LookupKey("missing", 5); len(got) != 0 {
			t.Fatalf("lookup of a missing key: %d", len(got))
		}
	}
}

func TestWaitChWakesReaders(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	ch, err := s.WaitCh("t", 1)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("woken before any message")
	default:
	}
	go s.Append(context.Background(), &Message{Topic: "t", QueueID: 1, Body: []byte("x")})
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("not woken by a new message")
	}
	if _, max := s.Offsets("t", 1); max != 1 {
		t.Fatalf("woken with max %d, want 1", max)
	}
}

// WaitChEnd says where the queue ends; the channel it hands out is closed
// by the next message.
func TestWaitChEnd(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	ch, end, err := s.WaitChEnd("t", 0)
	if err != nil || end != 0 {
		t.Fatalf("empty queue: end %d, err %v; want 0", end, err)
	}
	go s.Append(context.Background(), &Message{Topic: "t", Body: []byte("x")})
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("not woken by a new message")
	}
	if _, end, _ := s.WaitChEnd("t", 0); end != 1 {
		t.Fatalf("a queue with one message ends at %d", end)
	}
}

// countWaker counts its wakes and signals each on a channel.
type countWaker struct {
	n    atomic.Int32
	woke chan struct{}
}

func (w *countWaker) Wake(bool) {
	w.n.Add(1)
	w.woke <- struct{}{}
}

// A watcher is woken once per Watch, however often it was added and
// however many messages came, and not at all once unwatched.
func TestWatchWakesOnce(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	ctx := context.Background()
	w := &countWaker{woke: make(chan struct{}, 8)}
	for range 2 {
		if end, err := s.Watch("t", 0, w); err != nil || end != 0 {
			t.Fatalf("empty queue: end %d, err %v; want 0", end, err)
		}
	}
	for i := range 3 {
		if err := s.Append(ctx, &Message{Topic: "t", Body: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-w.woke:
	case <-time.After(10 * time.Second):
		t.Fatal("not woken by new messages")
	}
	if _, max := s.Offsets("t", 0); max == 0 {
		t.Fatal("woken before the queue grew")
	}
	if end, _ := s.Watch("t", 0, w); end == 0 {
		t.Fatal("a watcher of a queue with messages: end 0")
	}
	s.Unwatch("t", 0, w)
	if err := s.Append(ctx, &Message{Topic: "t", Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, s)
	if end, _ := s.Watch("t", 0, w); end != 4 {
		t.Fatalf("end %d, want 4", end)
	}
	if err := s.Append(ctx, &Message{Topic: "t", Body: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.woke:
	case <-time.After(10 * time.Second):
		t.Fatal("not woken after watching again")
	}
	if n := w.n.Load(); n != 2 {
		t.Fatalf("%d wakes, want 2 (one per watch)", n)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions(t))
	ctx := context.Background()
	cases := []struct {
		m    Message
		want error
		text string
	}{
		{Message{Topic: ""}, ErrInvalidMessage, "topic name"},
		{Message{Topic: "a/b"}, ErrInvalidMessage, "'/'"},
		{Message{Topic: strings.Repeat("x", 128)}, ErrInvalidMessage, "128 characters"},
		{Message{Topic: "t", QueueID: -1}, ErrInvalidMessage, "queue id"},
		{Message{Topic: "t", Body: make([]byte, 16<<10)}, ErrMessageTooLarge, "max-message-size 16384"},
		{Message{Topic: "t", Subject: strings.Repeat("s", 70000)}, ErrMessageTooLarge, "subject"},
	}
	for _, c := range cases {
		err := s.Append(ctx, &c.m)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("append %.20q: %v, want %v mentioning %q", c.m.Topic, err, c.want, c.text)
		}
	}
	if _, err := Open(dir, testOptions(t)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open of a directory in use: %v, want ErrLocked", err)
	}
	o := testOptions(t)
	o.SegmentSize = 1000
	if _, err := Open(t.TempDir(), o); err == nil || !strings.Contains(err.Error(), "segment size") {
		t.Fatalf("segment smaller than a record: %v", err)
	}
	s.Close()
	if err := s.Append(ctx, &Message{Topic: "t"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
}

func TestMetaDocuments(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions(t))
	type topics struct{ Names []string }
	if ok, err := s.LoadMeta("topics", &topics{}); ok || err != nil {
		t.Fatalf("load of a missing document: %v %v", ok, err)
	}
	if err := s.SaveMeta("topics", topics{[]string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	var got topics
	if ok, err := s.LoadMeta("topics", &got); !ok || err != nil || len(got.Names) != 2 {
		t.Fatalf("load: %v %v %v", got, ok, err)
	}
	if err := s.SaveMeta("../x", got); err == nil {
		t.Fatal("a metadata name with a path was accepted")
	}
	// A document changed on disk behind the store's back is refused.
	path := filepath.Join(dir, "meta", "topics.json")
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), `"a"`, `"c"`, 1)), 0o644)
	if _, err := s.LoadMeta("topics", &got); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("load of a changed document: %v, want ErrCorrupt", err)
	}
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.RetentionAge = time.Hour
	o.RetentionDiskRatio = -1
	s := openTest(t, dir, o)
	sent := appendN(t, s, 1000, func(i int) *Message {
		return &Message{Topic: "t", Keys: []string{"k"}, Body: make([]byte, 200)}
	})
	segs := s.log.segments()
	if len(segs) < 4 {
		t.Fatalf("%d segments; the test needs several", len(segs))
	}
	if n, err := s.ApplyRetention(time.Now()); n != 0 || err != nil {
		t.Fatalf("retention deleted %d fresh segments: %v", n, err)
	}
	// Age the first two segments.
	old := time.Now().Add(-2 * time.Hour)
	for _, seg := range segs[:2] {
		os.Chtimes(seg.path, old, old)
	}
	n, err := s.ApplyRetention(time.Now())
	if n != 2 || err != nil {
		t.Fatalf("retention deleted %d segments, want 2: %v", n, err)
	}
	if got := s.Stats().Min; got != segs[2].base {
		t.Fatalf("log min %d, want %d", got, segs[2].base)
	}
	min, max := s.Offsets("t", 0)
	if max != 1000 || min == 0 || sent[min].LogOffset < segs[2].base || sent[min-1].LogOffset >= segs[2].base {
		t.Fatalf("queue offsets [%d, %d) after retention", min, max)
	}
	if _, err := s.Read("t", 0, min-1, ReadOptions{}); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the new min: %v", err)
	}
	if got := readAll(t, s, "t", 0, min); len(got) != int(max-min) {
		t.Fatalf("read %d after retention, want %d", len(got), max-min)
	}
	if _, err := s.Get(s.MessageID(sent[0].LogOffset)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a deleted message: %v", err)
	}
	if got, _ := s.LookupKey("k", 2000); len(got) != int(max-min) {
		t.Fatalf("key lookup after retention: %d, want %d", len(got), max-min)
	}
	// The same after a reopen.
	s.Close()
	s = openTest(t, dir, o)
	if m2, x2 := s.Offsets("t", 0); m2 != min || x2 != max {
		t.Fatalf("after reopen offsets [%d, %d), want [%d, %d)", m2, x2, min, max)
	}

	// The disk ratio deletes every sealed segment, never the last one.
	s.opts.RetentionAge, s.opts.RetentionDiskRatio = -1, 1e-9
	if _, err := s.ApplyRetention(time.Now()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 1 {
		t.Fatalf("%d segments left by the disk ratio, want 1", st.Segments)
	}
	min, max = s.Offsets("t", 0)
	if got := readAll(t, s, "t", 0, min); len(got) != int(max-min) || max != 1000 {
		t.Fatalf("read %d of [%d, %d) after the disk ratio", len(got), min, max)
	}
}
