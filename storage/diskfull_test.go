package storage

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiskFull fills a small tmpfs: the append that finds no space fails
// with ErrDiskFull, and everything acknowledged before stays readable, also
// after a reopen on the still-full disk.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs to mount a 3 MiB tmpfs (root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 512<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t)
	o.SegmentSize = 256 << 10
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for ; ; acked++ {
		err = s.Append(context.Background(), &Message{Topic: "t", Body: make([]byte, 1000)})
		if err != nil {
			break
		}
		if acked > 10000 {
			t.Fatal("3 MiB never filled up")
		}
	}
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("append on a full disk: %v, want ErrDiskFull", err)
	}
	t.Logf("%d messages acknowledged before: %v", acked, err)
	if err := s.Append(context.Background(), &Message{Topic: "t", Body: make([]byte, 1000)}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("second append on a full disk: %v", err)
	}
	// Space comes back: appends go on.
	os.Remove(filler)
	for i := 0; i < 300; i++ {
		if err := s.Append(context.Background(), &Message{Topic: "t", Body: make([]byte, 1000)}); err != nil {
			t.Fatalf("append after space came back: %v", err)
		}
		acked++
	}
	waitIndexed(t, s)
	if got := readAll(t, s, "t", 0, 0); len(got) != acked {
		t.Fatalf("read %d messages, %d were acknowledged", len(got), acked)
	}
	s.Close()
	s = openTest(t, dir, o)
	if got := readAll(t, s, "t", 0, 0); len(got) != acked {
		t.Fatalf("after reopen: read %d messages, %d were acknowledged", len(got), acked)
	}
}

// TestNearlyFullDisk: with less free space than a reservation chunk, the
// log reserves less at a time, so a disk with room for a message stores it.
func TestNearlyFullDisk(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("needs to mount a 6 MiB tmpfs (root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	o := testOptions(t)
	o.SegmentSize = 64 << 20 // reserved 64 MiB at a time while the disk has room
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acked := 0
	for ; acked < 2000; acked++ { // 2 MiB of a 6 MiB disk
		if err := s.Append(context.Background(), &Message{Topic: "t", Body: make([]byte, 1000)}); err != nil {
			t.Fatalf("append %d on a disk with room: %v", acked, err)
		}
	}
	var err2 error
	for ; err2 == nil && acked < 20000; acked++ {
		err2 = s.Append(context.Background(), &Message{Topic: "t", Body: make([]byte, 1000)})
	}
	if !errors.Is(err2, ErrDiskFull) {
		t.Fatalf("filling the disk: %v, want ErrDiskFull", err2)
	}
	t.Logf("%d messages of 1000 bytes stored on a 6 MiB disk", acked-1)
}
