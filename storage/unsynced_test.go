package storage

import "slices"

// marked returns the starts marked, in order, and whether the directory is.
func (u *unsynced) marked() ([]int64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var starts []int64
	for start := range u.files {
		starts = append(starts, start)
	}
	slices.Sort(starts)
	return starts, u.dir
}
