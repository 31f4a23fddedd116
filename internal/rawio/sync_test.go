package rawio

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

func tempFile(t *testing.T, data string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSync(t *testing.T) {
	t.Logf("fsync via %s", Via())
	f := tempFile(t, "hello")
	if err := Sync(f); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := SyncData(f); err != nil {
		t.Fatalf("SyncData: %v", err)
	}
	d, err := os.Open(filepath.Dir(f.Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := Sync(d); err != nil {
		t.Fatalf("Sync of a directory: %v", err)
	}
}

// More callers than rings: each waits for one, and the rings made stay
// within the bound.
func TestSyncConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 16*10)
	for i := range 16 {
		f := tempFile(t, "x")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				if _, err := f.WriteAt([]byte{byte(i + j)}, int64(j)); err != nil {
					errs <- err
					return
				}
				errs <- SyncData(f)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rings.mu.Lock()
	made := rings.made
	rings.mu.Unlock()
	if made > maxRings {
		t.Fatalf("%d rings made, at most %d", made, maxRings)
	}
}

func TestSyncClosedFile(t *testing.T) {
	f := tempFile(t, "x")
	f.Close()
	for _, sync := range []func(*os.File) error{Sync, SyncData} {
		if err := sync(f); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("sync of a closed file: %v, want os.ErrClosed", err)
		}
	}
}

// A descriptor that cannot be synced answers as the system call does.
func TestSyncPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var pe *os.PathError
	if err := SyncData(w); !errors.As(err, &pe) || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("SyncData of a pipe: %v, want a *os.PathError with EINVAL", err)
	}
}

func TestSyncBlockingPath(t *testing.T) {
	ringsOff.Store(true)
	t.Cleanup(func() { ringsOff.Store(false) })
	if via := Via(); via == "io_uring" {
		t.Fatalf("Via = %q with rings disabled", via)
	}
	f := tempFile(t, "x")
	if err := Sync(f); err != nil {
		t.Fatal(err)
	}
	if err := SyncData(f); err != nil {
		t.Fatal(err)
	}
}
