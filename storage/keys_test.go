package storage

import (
	"path/filepath"
	"slices"
	"testing"
)

// The key index's sync fsyncs the files written since the last one, and
// its directory only after a file came; what a failed sync did not do is
// left for the next, and a file dropped meanwhile is skipped.
func TestKeyIndexSyncsWhatChanged(t *testing.T) {
	dir := t.TempDir()
	k, err := openKeyIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.close)
	entry := make([]byte, keyEntrySize)
	appendTo := func(base int64) {
		t.Helper()
		if err := k.append(base, entry); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what string, want []int64, wantDir bool) {
		t.Helper()
		got, dirty := k.pending.marked()
		if !slices.Equal(got, want) || dirty != wantDir {
			t.Fatalf("%s: files %v and the directory (%v) to sync, want %v and %v", what, got, dirty, want, wantDir)
		}
	}
	sync := func() {
		t.Helper()
		if err := k.sync(); err != nil {
			t.Fatal(err)
		}
		expect("after a sync", nil, false)
	}

	appendTo(0)
	expect("a new file", []int64{0}, true)
	sync()
	appendTo(0)
	expect("more in the same file", []int64{0}, false)
	sync()

	appendTo(1000)
	k.dir = filepath.Join(dir, "gone") // its fsync fails
	if err := k.sync(); err == nil {
		t.Fatal("sync of a missing directory succeeded")
	}
	expect("after a failed sync of the directory", nil, true)
	k.dir = dir
	sync()

	appendTo(0)
	k.mu.Lock()
	k.files[0].Close() // as if dropped while the sync runs
	k.mu.Unlock()
	if err := k.sync(); err != nil {
		t.Fatalf("sync of a file closed meanwhile: %v", err)
	}
}
