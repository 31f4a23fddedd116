package storage

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// FlushBuckets are the upper bounds of LogStats.FlushHistogram's buckets:
// from a fast SSD's fsync to a stalled disk's.
var FlushBuckets = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// recordFlush counts one fsync round of the log that took d. Only the
// flusher (and Close, after it stopped) calls it.
func (s *Store) recordFlush(d time.Duration) {
	i := 0
	for i < len(FlushBuckets) && d > FlushBuckets[i] {
		i++
	}
	s.flushHist[i].Add(1)
	s.flushes.Add(1)
	s.flushNanos.Add(int64(d))
}

// DiskStats is the store's use of its disk.
type DiskStats struct {
	// SegmentBytes is the disk space the commit-log segments hold
	// (allocated ahead of the writer, so up to one chunk more than written).
	SegmentBytes int64
	// FreeBytes and SizeBytes are the file system's that holds the data
	// directory: space available to unprivileged writers, and in all.
	FreeBytes, SizeBytes int64
}

// Disk reports the store's disk use. It reads the segment list and makes
// one statfs call: cheap enough for every metrics scrape.
func (s *Store) Disk() (DiskStats, error) {
	var d DiskStats
	for _, seg := range s.log.segments() {
		d.SegmentBytes += seg.allocated.Load()
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.dir, &st); err != nil {
		return d, fmt.Errorf("storage: statfs %s: %w", s.dir, err)
	}
	d.FreeBytes = int64(st.Bavail) * st.Bsize
	d.SizeBytes = int64(st.Blocks) * st.Bsize
	return d, nil
}
