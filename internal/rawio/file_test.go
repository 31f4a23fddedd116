package rawio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// blocking says whether WriteAt now takes the blocking path.
func blocking() bool { return int64(time.Since(epoch)) < blockingUntil.Load() }

// TestWriteAt writes at offsets, past the end and over what is there, raw
// and, after a write slower than slowWrite, through the blocking path.
func TestWriteAt(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Cleanup(func() { blockingUntil.Store(0) })

	write := func(p string, off int64) {
		t.Helper()
		if n, err := WriteAt(f, []byte(p), off); n != len(p) || err != nil {
			t.Fatalf("WriteAt(%q, %d) = %d, %v", p, off, n, err)
		}
	}
	saved := slowWrite
	t.Cleanup(func() { slowWrite = saved })
	slowWrite = time.Hour // no write is slow, however busy the machine
	write("hello", 0)
	write("world", 8) // leaves a hole of zeros
	write("", 3)
	if rawFileWrites && blocking() {
		t.Fatal("a fast write sent the next ones to the blocking path")
	}

	slowWrite = -1 // every write is slow
	write("HE", 0)
	if rawFileWrites && !blocking() {
		t.Fatal("a slow write left the next ones raw")
	}
	write("LLO", 2) // through the blocking path

	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte("HELLO\x00\x00\x00world"); !bytes.Equal(got, want) {
		t.Fatalf("file holds %q, want %q", got, want)
	}
}

// TestWriteAtError: a file that cannot be written gives the system's error
// on either path.
func TestWriteAtError(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(name) // read-only
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Cleanup(func() { blockingUntil.Store(0) })
	for _, path := range []string{"raw", "blocking"} {
		if path == "blocking" {
			blockingUntil.Store(1 << 62)
		}
		if _, err := WriteAt(f, []byte("y"), 0); !errors.Is(err, syscall.EBADF) {
			t.Fatalf("%s: WriteAt on a read-only file: %v, want EBADF", path, err)
		}
	}
	f.Close()
	for _, path := range []string{"blocking", "raw"} {
		if path == "raw" {
			blockingUntil.Store(0)
		}
		if _, err := WriteAt(f, []byte("y"), 0); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("%s: WriteAt on a closed file: %v, want os.ErrClosed", path, err)
		}
	}
}
