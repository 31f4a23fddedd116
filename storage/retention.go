package storage

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// janitorLoop applies retention every RetentionCheckInterval.
func (s *Store) janitorLoop() {
	s.tickLoop(s.opts.RetentionCheckInterval, nil, func() {
		if _, err := s.ApplyRetention(time.Now()); err != nil {
			s.logger.Error("storage: retention", "err", err)
		}
	})
}

// ApplyRetention deletes whole sealed segments, oldest first, while the
// oldest was last written before now-RetentionAge or the file system is
// fuller than RetentionDiskRatio. The segment appends go to is never deleted,
// nor one the indexes have not passed. Queues' minimum offsets
// move past the deleted records. It returns how many segments it deleted.
func (s *Store) ApplyRetention(now time.Time) (int, error) {
	deleted := 0
	for {
		segs := s.log.segments()
		if len(segs) < 2 {
			break
		}
		first := segs[0]
		if first.end() > s.dispatched.Load() {
			break
		}
		reason, err := s.retentionReason(first, now)
		if err != nil {
			return deleted, err
		}
		if reason == "" {
			break
		}
		if g := s.guard.Load(); g != nil {
			if err := (*g)(first.end()); err != nil {
				return deleted, fmt.Errorf("storage: retention kept %s: %w", first.path, err)
			}
		}
		if _, err := s.log.dropFront(); err != nil {
			return deleted, err
		}
		if err := s.keys.drop(first.base); err != nil {
			return deleted, err
		}
		deleted++
		s.logger.Info("storage: retention deleted a segment", "segment", first.path, "reason", reason)
	}
	if deleted > 0 {
		logMin := s.log.minOffset()
		for _, q := range s.allQueues() {
			if err := s.trimQueue(q, logMin); err != nil {
				return deleted, err
			}
		}
	}
	return deleted, nil
}

func (s *Store) retentionReason(seg *segment, now time.Time) (string, error) {
	if s.opts.RetentionAge > 0 {
		st, err := os.Stat(seg.path)
		if err != nil {
			return "", fmt.Errorf("storage: %w", err)
		}
		if age := now.Sub(st.ModTime()); age > s.opts.RetentionAge {
			return fmt.Sprintf("last written %s ago, retention-age %s", age.Round(time.Second), s.opts.RetentionAge), nil
		}
	}
	if s.opts.RetentionDiskRatio > 0 {
		used, err := diskUsedRatio(s.dir)
		if err != nil {
			return "", err
		}
		if used > s.opts.RetentionDiskRatio {
			return fmt.Sprintf("disk %.1f%% full, retention-disk-ratio %.1f%%", used*100, s.opts.RetentionDiskRatio*100), nil
		}
	}
	return "", nil
}

// diskUsedRatio is the fraction of the file system holding dir that is not
// available to unprivileged writers.
func diskUsedRatio(dir string) (float64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("storage: statfs %s: %w", dir, err)
	}
	if st.Blocks == 0 {
		return 0, nil
	}
	return 1 - float64(st.Bavail)/float64(st.Blocks), nil
}
