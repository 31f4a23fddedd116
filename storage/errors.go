package storage

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by the store wrap one of these, with the
// detail (which limit, which offset) in the message; test with errors.Is.
var (
	// ErrClosed is returned by every operation on a closed store.
	ErrClosed = errors.New("storage: store is closed")
	// ErrMessageTooLarge: the encoded message is over Options.MaxMessageSize
	// or one of its fields is over its own limit.
	ErrMessageTooLarge = errors.New("storage: message too large")
	// ErrInvalidMessage: a topic name, queue id or field the record format
	// cannot carry.
	ErrInvalidMessage = errors.New("storage: invalid message")
	// ErrDiskFull: the file system refused to allocate space. Nothing was written.
	ErrDiskFull = errors.New("storage: disk full")
	// ErrCorrupt: a record failed its checksum or framing checks on read.
	ErrCorrupt = errors.New("storage: corrupt record")
	// ErrOffsetOutOfRange: a queue offset below the queue's minimum (trimmed
	// by retention) or above its maximum. The error is an *OffsetError.
	ErrOffsetOutOfRange = errors.New("storage: offset out of range")
	// ErrNotFound: no message with that id or at that log offset.
	ErrNotFound = errors.New("storage: message not found")
	// ErrLocked: another process holds the data directory.
	ErrLocked = errors.New("storage: data directory is in use by another process")
	// ErrFenced: appends are refused because the store was fenced (Fence);
	// the fencing error wraps it.
	ErrFenced = errors.New("storage: appends are fenced")
	// ErrNotReplicated: a write the sync replication mode cannot
	// acknowledge (too few in-sync replicas); the ack gate's errors wrap it.
	ErrNotReplicated = errors.New("storage: not acknowledged by enough replicas")
	// ErrTruncating: an append came while Truncate cut the log.
	ErrTruncating = errors.New("storage: the log is being truncated; appends are refused")
)

// OffsetError reports a queue offset outside [Min, Max]; with no Topic, a
// log offset outside the commit log (ReadRaw).
type OffsetError struct {
	Topic    string
	QueueID  int
	Offset   int64
	Min, Max int64
}

func (e *OffsetError) Error() string {
	if e.Topic == "" {
		return fmt.Sprintf("storage: log offset %d out of range [%d, %d]", e.Offset, e.Min, e.Max)
	}
	return fmt.Sprintf("storage: offset %d of %s/%d out of range [%d, %d]", e.Offset, e.Topic, e.QueueID, e.Min, e.Max)
}

// Unwrap makes errors.Is(err, ErrOffsetOutOfRange) hold.
func (e *OffsetError) Unwrap() error { return ErrOffsetOutOfRange }
