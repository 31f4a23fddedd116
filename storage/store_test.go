package storage

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testOptions are small options for tests; logs go to t.Log.
func testOptions(t testing.TB) Options {
	return Options{
		SegmentSize:      64 << 10,
		MaxMessageSize:   16 << 10,
		QueueFileEntries: 100,
		Logger:           slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func openTest(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// genMessage makes a message determined by seq alone, so a test can check
// any stored message against what it must be.
func genMessage(seq int, topics, queues, maxBody int) *Message {
	r := rand.New(rand.NewSource(int64(seq)))
	body := make([]byte, r.Intn(maxBody+1))
	r.Read(body)
	m := &Message{
		Topic:    fmt.Sprintf("topic-%d", seq%topics),
		QueueID:  (seq / topics) % queues,
		Subject:  fmt.Sprintf("dev/%d/telemetry", seq%7),
		Body:     body,
		BornTime: int64(seq) * 1000,
		Flags:    uint32(seq % 3),
	}
	if seq%2 == 0 {
		m.Keys = []string{fmt.Sprintf("key-%d", seq), "even"}
	}
	if seq%5 == 0 {
		m.Properties = Properties{{"seq", fmt.Sprint(seq)}, {"p", "v"}}
	}
	return m
}

// sameMessage reports how got differs from want in the fields a producer sets.
func sameMessage(got *Message, want *Message) error {
	switch {
	case got.Topic != want.Topic || got.QueueID != want.QueueID:
		return fmt.Errorf("topic/queue %s/%d, want %s/%d", got.Topic, got.QueueID, want.Topic, want.QueueID)
	case got.Subject != want.Subject:
		return fmt.Errorf("subject %q, want %q", got.Subject, want.Subject)
	case !bytes.Equal(got.Body, want.Body):
		return fmt.Errorf("body of %d bytes differs from the %d sent", len(got.Body), len(want.Body))
	case got.BornTime != want.BornTime || got.Flags != want.Flags:
		return fmt.Errorf("born %d flags %d, want %d %d", got.BornTime, got.Flags, want.BornTime, want.Flags)
	case fmt.Sprint(got.Keys) != fmt.Sprint(want.Keys):
		return fmt.Errorf("keys %v, want %v", got.Keys, want.Keys)
	case fmt.Sprint(got.Properties) != fmt.Sprint(want.Properties):
		return fmt.Errorf("properties %v, want %v", got.Properties, want.Properties)
	}
	return nil
}

func readAll(t testing.TB, s *Store, topic string, q int, from int64) []Message {
	t.Helper()
	var out []Message
	for {
		res, err := s.Read(topic, q, from, ReadOptions{MaxCount: 50})
		if err != nil {
			t.Fatalf("read %s/%d at %d: %v", topic, q, from, err)
		}
		out = append(out, res.Messages...)
		if res.Next == from {
			return out
		}
		from = res.Next
	}
}

func TestAppendReadReopen(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []FlushMode{FlushAsync, FlushSync} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			o := testOptions(t)
			o.FlushMode = mode
			s := openTest(t, dir, o)
			const n, topics, queues = 2000, 3, 4
			sent := map[string][]*Message{}
			for i := 0; i < n; i++ {
				m := genMessage(i, topics, queues, 300)
				if err := s.Append(ctx, m); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
				k := fmt.Sprintf("%s/%d", m.Topic, m.QueueID)
				if m.QueueOffset != int64(len(sent[k])) {
					t.Fatalf("append %d: queue offset %d, want %d", i, m.QueueOffset, len(sent[k]))
				}
				sent[k] = append(sent[k], m)
			}
			check := func(s *Store) {
				t.Helper()
				waitIndexed(t, s)
				for k, want := range sent {
					topic, q := want[0].Topic, want[0].QueueID
					if min, max := s.Offsets(topic, q); min != 0 || max != int64(len(want)) {
						t.Fatalf("%s offsets [%d,%d), want [0,%d)", k, min, max, len(want))
					}
					got := readAll(t, s, topic, q, 0)
					if len(got) != len(want) {
						t.Fatalf("%s: read %d messages, want %d", k, len(got), len(want))
					}
					for i := range got {
						if err := sameMessage(&got[i], want[i]); err != nil {
							t.Fatalf("%s offset %d: %v", k, i, err)
						}
						if got[i].LogOffset != want[i].LogOffset || got[i].StoreTime != want[i].StoreTime {
							t.Fatalf("%s offset %d: log offset/store time %d/%d, want %d/%d", k, i,
								got[i].LogOffset, got[i].StoreTime, want[i].LogOffset, want[i].StoreTime)
						}
					}
				}
			}
			check(s)
			if st := s.Stats(); st.Segments < 3 {
				t.Fatalf("want several segments with 64 KiB segments, got %d", st.Segments)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "clean")); err != nil {
				t.Fatalf("no clean-shutdown marker after Close: %v", err)
			}
			s = openTest(t, dir, o)
			check(s)
			// Appends go on from where they were.
			m := genMessage(n, topics, queues, 300)
			if err := s.Append(ctx, m); err != nil {
				t.Fatal(err)
			}
			k := fmt.Sprintf("%s/%d", m.Topic, m.QueueID)
			if m.QueueOffset != int64(len(sent[k])) {
				t.Fatalf("after reopen: queue offset %d, want %d", m.QueueOffset, len(sent[k]))
			}
		})
	}
}

// appendedEnd is the end of the log including what is not yet committed.
func appendedEnd(s *Store) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writePos
}

// waitIndexed waits until the dispatcher has indexed everything appended.
func waitIndexed(t testing.TB, s *Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		end := appendedEnd(s)
		if s.dispatched.Load() >= end {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("index stuck at %d, log written to %d of %d", s.dispatched.Load(), s.written.Load(), end)
		}
		time.Sleep(time.Millisecond)
	}
}
