package storage

import (
	"fmt"
	"testing"
)

// A released read's memory serves the next reads, and what they return is
// their own messages, whole, whether read into pooled memory or (Kept)
// memory of their own.
func TestReadReleaseReusesArena(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions(t))
	for i := range 20 {
		m := &Message{Topic: "t", QueueID: 0, Subject: fmt.Sprint("s", i), Keys: []string{fmt.Sprint("k", i), "x"},
			Properties: Properties{{"p", fmt.Sprint(i)}}, Body: []byte(fmt.Sprint("body ", i))}
		if err := s.Append(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	waitIndexed(t, s)
	for off := int64(0); off < 20; off += 5 {
		// Kept (every other read): memory of the records' size, nothing
		// for Release to give back.
		kept := off%10 == 5
		res, err := s.Read("t", 0, off, ReadOptions{MaxCount: 5, Kept: kept})
		if err != nil || len(res.Messages) != 5 {
			t.Fatalf("read at %d: %d messages, %v", off, len(res.Messages), err)
		}
		if kept != (len(res.arenas) == 0) {
			t.Fatalf("read at %d, kept %v: %d arenas to give back", off, kept, len(res.arenas))
		}
		for j, m := range res.Messages {
			i := int(off) + j
			if m.Subject != fmt.Sprint("s", i) || string(m.Body) != fmt.Sprint("body ", i) ||
				len(m.Keys) != 2 || m.Keys[0] != fmt.Sprint("k", i) || m.Properties.Get("p") != fmt.Sprint(i) {
				t.Fatalf("message %d read back as %+v", i, m)
			}
		}
		res.Release()
		if res.Messages != nil {
			t.Fatal("Release left the messages")
		}
	}
}

func TestArenaClass(t *testing.T) {
	for _, c := range []struct {
		n, class int
		ok       bool
	}{{0, 0, true}, {1, 0, true}, {512, 0, true}, {513, 1, true}, {4096, 3, true}, {4097, 4, true}, {8 << 20, 14, true}, {8<<20 + 1, 0, false}} {
		if class, ok := arenaClass(c.n); class != c.class || ok != c.ok {
			t.Errorf("arenaClass(%d) = %d, %v; want %d, %v", c.n, class, ok, c.class, c.ok)
		}
	}
	p := getArena(5000)
	if cap(*p) != 8192 || len(*p) != 0 {
		t.Fatalf("getArena(5000): len %d cap %d", len(*p), cap(*p))
	}
	putArena(p)
	if q := getArena(9 << 20); cap(*q) != 9<<20 {
		t.Fatalf("getArena over the largest class: cap %d", cap(*q))
	}
}
