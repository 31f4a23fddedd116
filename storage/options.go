package storage

import (
	"fmt"
	"log/slog"
	"time"
)

// FlushMode says when an append is durable.
type FlushMode string

const (
	// FlushAsync returns from Append once the record is in the OS page cache
	// (the commit log is memory-mapped, so a crash of the process loses
	// nothing); the flusher fsyncs at least every FlushInterval, which bounds
	// what a power loss can take.
	FlushAsync FlushMode = "async"
	// FlushSync returns from Append only after the record is fsynced. Appends
	// that wait together share one fsync (group commit).
	FlushSync FlushMode = "sync"
)

// Options configure a Store. The zero value of a field means its default.
type Options struct {
	// SegmentSize is the size of one commit-log segment file (default 1 GiB).
	SegmentSize int64
	// MaxMessageSize caps the bytes a message carries: body, subject, keys and
	// properties together (default 4 MiB).
	MaxMessageSize int
	// QueueFileEntries is the number of index entries in one consume-queue
	// file (default 300,000, about 7 MiB).
	QueueFileEntries int64
	// FlushMode is FlushAsync (default) or FlushSync.
	FlushMode FlushMode
	// FlushInterval bounds how long an async append stays unsynced
	// (default 200 ms).
	FlushInterval time.Duration
	// RetentionAge deletes sealed segments older than this (default 72 h;
	// negative disables).
	RetentionAge time.Duration
	// RetentionDiskRatio deletes the oldest sealed segments while the file
	// system holding the store is fuller than this ratio (default 0.90;
	// negative disables).
	RetentionDiskRatio float64
	// RetentionCheckInterval is how often retention runs (default 1 min).
	RetentionCheckInterval time.Duration
	// Logger receives recovery reports and background errors (default slog.Default()).
	Logger *slog.Logger
}

// Defaults for Options.
const (
	DefaultSegmentSize      = 1 << 30
	DefaultMaxMessageSize   = 4 << 20
	DefaultQueueFileEntries = 300_000
	DefaultFlushInterval    = 200 * time.Millisecond
	DefaultRetentionAge     = 72 * time.Hour
	DefaultRetentionRatio   = 0.90
	DefaultRetentionCheck   = time.Minute
)

// withDefaults fills zero fields and checks the combination.
func (o Options) withDefaults() (Options, error) {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.QueueFileEntries == 0 {
		o.QueueFileEntries = DefaultQueueFileEntries
	}
	if o.FlushMode == "" {
		o.FlushMode = FlushAsync
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.RetentionAge == 0 {
		o.RetentionAge = DefaultRetentionAge
	}
	if o.RetentionDiskRatio == 0 {
		o.RetentionDiskRatio = DefaultRetentionRatio
	}
	if o.RetentionCheckInterval == 0 {
		o.RetentionCheckInterval = DefaultRetentionCheck
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch o.FlushMode {
	case FlushAsync, FlushSync:
	default:
		return o, fmt.Errorf("storage: flush mode %q: want %q or %q", o.FlushMode, FlushAsync, FlushSync)
	}
	if o.MaxMessageSize < 1 || o.MaxMessageSize > maxMessageSizeLimit {
		return o, fmt.Errorf("storage: max message size %d: want 1..%d", o.MaxMessageSize, maxMessageSizeLimit)
	}
	if min := int64(maxRecordSize(o.MaxMessageSize)) + headerSize; o.SegmentSize < min {
		return o, fmt.Errorf("storage: segment size %d is smaller than one record of max message size %d (%d bytes)",
			o.SegmentSize, o.MaxMessageSize, min)
	}
	if o.QueueFileEntries < 1 {
		return o, fmt.Errorf("storage: queue file entries %d: want at least 1", o.QueueFileEntries)
	}
	if o.FlushInterval < 0 {
		return o, fmt.Errorf("storage: flush interval %v: want > 0", o.FlushInterval)
	}
	return o, nil
}
