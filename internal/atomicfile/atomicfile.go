// Package atomicfile replaces small files so that a crash leaves either the
// old contents or the new ones, never a mix.
package atomicfile

import (
	"os"
	"path/filepath"

	"github.com/ferrymq/ferry/internal/rawio"
)

// Write replaces path with data: a temporary file in the same directory
// (mode 0600), fsynced, renamed over path, and the directory fsynced. On an
// error before the rename, path is untouched and the temporary file removed.
func Write(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs the directory dir, so that the names in it (a file just
// created or renamed) survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return rawio.Sync(d)
}
