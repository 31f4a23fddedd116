package storage

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// logCapture keeps log lines for assertions.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func fillStore(t *testing.T, dir string, o Options, n int) []*Message {
	t.Helper()
	s := openTest(t, dir, o)
	var sent []*Message
	for i := 0; i < n; i++ {
		m := genMessage(i, 1, 1, 500)
		if err := s.Append(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return sent
}

// simulateCrash makes the store in dir look as if its process died with the
// indexes checkpointed at offset: no clean marker, an older checkpoint.
func simulateCrash(t *testing.T, dir string, offset int64, o Options) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, "clean")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "index", "checkpoint"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeCheckpoint(f, checkpointData{offset: offset, perFile: o.QueueFileEntries, queues: 1}); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

func segmentPath(dir string, base int64) string {
	return filepath.Join(dir, "commitlog", segmentName(base))
}

func TestTornTailIsCutAndReported(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	sent := fillStore(t, dir, o, 300)
	last := sent[len(sent)-1]
	simulateCrash(t, dir, 0, o)
	seg := last.LogOffset / o.SegmentSize * o.SegmentSize
	flipByte(t, segmentPath(dir, seg), last.LogOffset-seg+int64(last.Size)-1)

	var logs logCapture
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := openTest(t, dir, o)
	if !strings.Contains(logs.String(), "cut a torn or corrupt log tail") || !strings.Contains(logs.String(), "checksum") {
		t.Fatalf("the cut was not reported; logs:\n%s", logs.String())
	}
	if _, max := s.Offsets(last.Topic, 0); max != int64(len(sent)-1) {
		t.Fatalf("queue max %d after cutting the last record, want %d", max, len(sent)-1)
	}
	got := readAll(t, s, last.Topic, 0, 0)
	for i := range got {
		if err := sameMessage(&got[i], sent[i]); err != nil {
			t.Fatalf("offset %d: %v", i, err)
		}
	}
	if _, err := s.ReadAt(last.LogOffset); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the cut record is still readable: %v", err)
	}
	// The log goes on from the cut: the next message takes the lost one's place.
	m := genMessage(9999, 1, 1, 10)
	if err := s.Append(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if m.LogOffset != last.LogOffset || m.QueueOffset != last.QueueOffset {
		t.Fatalf("appended at %d/%d, want the cut record's %d/%d", m.LogOffset, m.QueueOffset, last.LogOffset, last.QueueOffset)
	}
}

func TestCorruptSealedSegmentFailsReadsClearly(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	sent := fillStore(t, dir, o, 600)
	victim := sent[10]
	if victim.LogOffset+int64(victim.Size) >= o.SegmentSize {
		t.Fatal("victim is not in the first segment")
	}
	flipByte(t, segmentPath(dir, 0), victim.LogOffset+int64(victim.Size)-3) // in the body

	s := openTest(t, dir, o)
	res, err := s.Read(victim.Topic, 0, 0, ReadOptions{MaxCount: 100})
	if err != nil || len(res.Messages) != 10 || res.Next != 10 {
		t.Fatalf("read before the corrupt record: %d messages, next %d, err %v; want 10, 10, nil", len(res.Messages), res.Next, err)
	}
	_, err = s.Read(victim.Topic, 0, 10, ReadOptions{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("read of the corrupt record: %v, want a checksum error", err)
	}
	if _, err := s.ReadAt(victim.LogOffset); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadAt of the corrupt record: %v, want ErrCorrupt", err)
	}
	// The records after it are intact and readable past it.
	got := readAll(t, s, victim.Topic, 0, 11)
	if len(got) != len(sent)-11 {
		t.Fatalf("read %d messages after the corrupt one, want %d", len(got), len(sent)-11)
	}
}

func TestMissingOrDamagedIndexIsRebuilt(t *testing.T) {
	cases := map[string]func(t *testing.T, dir string){
		"index dir removed": func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "index"))
		},
		"queue dir removed": func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "index", "queues", "topic-0"))
		},
		"queue file truncated": func(t *testing.T, dir string) {
			qdir := filepath.Join(dir, "index", "queues", "topic-0", "0")
			ents, _ := os.ReadDir(qdir)
			if err := os.Truncate(filepath.Join(qdir, ents[0].Name()), 10*entrySize+7); err != nil {
				t.Fatal(err)
			}
		},
		"checkpoint garbled": func(t *testing.T, dir string) {
			flipByte(t, filepath.Join(dir, "index", "checkpoint"), 9)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOptions(t)
			sent := fillStore(t, dir, o, 400)
			damage(t, dir)
			s := openTest(t, dir, o)
			got := readAll(t, s, "topic-0", 0, 0)
			if len(got) != len(sent) {
				t.Fatalf("read %d messages, want %d", len(got), len(sent))
			}
			for i := range got {
				if err := sameMessage(&got[i], sent[i]); err != nil {
					t.Fatalf("offset %d: %v", i, err)
				}
			}
		})
	}
}
