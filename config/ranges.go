package config

import (
	"fmt"
	"time"
)

// The ranges of the storage keys. The store checks the finer rule itself
// (a segment holds one record of the largest message with its headers).
const (
	maxMessageSizeLimit = 256 << 20 // the store's own limit on a message
	maxSegmentSize      = 1 << 40   // 1 TiB: past that, one file is no longer a segment
	minFlushInterval    = time.Millisecond
)

// validateSizes checks the storage sizes and intervals, naming the key, its
// value and the range allowed.
func (s StorageConfig) validateSizes() error {
	if m := s.MaxMessageSize; m < 1 || m > maxMessageSizeLimit {
		return fmt.Errorf("storage.max-message-size %d: want 1..%d bytes", m, maxMessageSizeLimit)
	}
	if n := s.SegmentSize; n < int64(s.MaxMessageSize) || n > maxSegmentSize {
		return fmt.Errorf("storage.segment-size %d: want %d (storage.max-message-size) to %d bytes", n, s.MaxMessageSize, int64(maxSegmentSize))
	}
	if s.FlushInterval < minFlushInterval {
		return fmt.Errorf("storage.flush-interval %v: want at least %v (storage.flush: sync writes every message to disk)", s.FlushInterval, minFlushInterval)
	}
	if s.RetentionAge == 0 {
		return fmt.Errorf("storage.retention-age 0s: want a positive age such as 72h, or a negative one (-1s) to keep messages forever")
	}
	if s.RetentionDiskRatio == 0 {
		return fmt.Errorf("storage.retention-disk-ratio 0: want a share of the disk above 0 and at most 1, such as 0.9, or a negative one (-1) to ignore the disk")
	}
	return nil
}
