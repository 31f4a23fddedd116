package storage

import "sync"

// unsynced is what an index's next sync must make durable: the files
// written or truncated since the last one, by start, and whether a file
// was made or removed, so its directory too. Its lock is never held while
// waiting for the disk: writers mark after each write.
type unsynced struct {
	mu    sync.Mutex
	files map[int64]bool
	dir   bool
}

// mark records the file at start (-1: none) and, if dir, the directory.
func (u *unsynced) mark(start int64, dir bool) {
	u.mu.Lock()
	if start >= 0 {
		if u.files == nil {
			u.files = map[int64]bool{}
		}
		u.files[start] = true
	}
	u.dir = u.dir || dir
	u.mu.Unlock()
}

// take returns what is marked, and clears it for the sync that makes it
// durable.
func (u *unsynced) take() (files map[int64]bool, dir bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	files, dir = u.files, u.dir
	u.files, u.dir = nil, false
	return files, dir
}

// restore marks again what a failed sync took and did not make durable.
func (u *unsynced) restore(files map[int64]bool, dir bool) {
	for start := range files {
		u.mark(start, false)
	}
	u.mark(-1, dir)
}
