package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/storage"
)

// The core is the only door to the store: front-ends and bridges read
// queues, look messages up and keep their own state through the methods
// of this file, never through package storage (TestOneDoor keeps it so).

// Storage's errors, as the core passes them on (wrapped); test with
// errors.Is.
var (
	// ErrMessageTooLarge: a message over the store's size limit, or one of
	// its fields over its own.
	ErrMessageTooLarge = storage.ErrMessageTooLarge
	// ErrInvalidMessage: a topic name, queue id or field the store cannot
	// keep.
	ErrInvalidMessage = storage.ErrInvalidMessage
	// ErrDiskFull: the file system refused the space; nothing was written.
	ErrDiskFull = storage.ErrDiskFull
	// ErrFenced: the broker takes no writes now (a replica, or a master
	// whose lease ran out: docs/replication.md).
	ErrFenced = storage.ErrFenced
	// ErrNotReplicated: the sync replication mode cannot acknowledge the
	// write (too few in-sync replicas); it was not stored.
	ErrNotReplicated = storage.ErrNotReplicated
	// ErrCorrupt: a record failed its checks on read.
	ErrCorrupt = storage.ErrCorrupt
	// ErrNotFound: no message at that log offset or with that id.
	ErrNotFound = storage.ErrNotFound
)

// MaxRead is the most messages one Read returns.
const MaxRead = 1024

// ValidTopic checks a name against the store's rules for topic names (1..127
// letters, digits, '_', '-', '%', '|'). Names starting with '%' are the
// core's own; CreateTopic refuses them.
func ValidTopic(name string) error { return storage.ValidTopic(name) }

// ReadOptions shape a Read.
type ReadOptions struct {
	// Max is the most messages returned, clamped to 1..MaxRead.
	Max int
	// Filter keeps the messages it matches, by their subject, or by
	// their properties for a SQL92 filter (route.ParseSQL92); the others
	// are passed over. The zero Filter keeps every message.
	Filter route.Filter
	// Wait is how long a read that finds nothing waits for messages to
	// come (a long poll); 0 answers at once.
	Wait time.Duration
	// Use, when set, is called with what a read found, when it found
	// messages, before Read returns and while the read still holds its
	// turn: what it builds from them (a response) counts toward the bound
	// on reads in progress at once. The messages, and every body, string
	// and key of them, are valid only during Use, which copies out what it
	// keeps: their memory serves later reads, and the ReadResult that
	// Read returns has no Messages.
	Use func(*ReadResult)
}

// ReadResult is what a Read found.
type ReadResult struct {
	// Messages are the messages read, in queue order; none when the wait
	// ended first.
	Messages []Message
	// Next is where the reader reads next: past the messages returned and
	// those the filter passed over; with Moved, where it moves to.
	Next int64
	// Min and Max are the queue's offsets when it was read: messages
	// [Min, Max) are readable.
	Min, Max int64
	// Moved says the offset read was not in the queue: below Min (deleted
	// by retention; Next is Min, answered at once), or past Max when the
	// wait ended (a queue that lost its tail; Next is Max).
	Moved bool
}

// Read reads up to o.Max messages of a queue from offset on, those
// o.Filter keeps. Finding none, it waits up to o.Wait for messages to
// come; an offset past the queue's end waits too (a send just acknowledged
// can be ahead of the index by a moment), and is moved only if still past
// the end when the wait ends. An offset below the queue's minimum is moved
// to it at once.
//
// Reads take turns: at most max(4, 2×GOMAXPROCS) of them read (and run
// o.Use) at once, over the broker. A read whose ctx ends returns its error:
// ctx is the reader's life (a connection's), o.Wait the poll's length.
func (b *Broker) Read(ctx context.Context, topic string, queue int, offset int64, o ReadOptions) (ReadResult, error) {
	if isInternalTopic(topic) {
		return ReadResult{Next: offset}, fmt.Errorf("%w: %q is the broker's own", ErrUnknownTopic, topic)
	}
	n := max(1, min(o.Max, MaxRead))
	f := readFilter(o.Filter)
	var expired <-chan time.Time
	for {
		ch, err := b.store.WaitCh(topic, queue) // before the read: no wake-up is lost
		if err != nil {
			return ReadResult{Next: offset}, fmt.Errorf("core: read %s/%d: %w", topic, queue, err)
		}
		b.readTurns <- struct{}{}
		if err := ctx.Err(); err != nil { // the reader is gone: no one to answer
			<-b.readTurns
			return ReadResult{Next: offset}, err
		}
		res, done, err := b.readOnce(topic, queue, offset, n, f, o.Use)
		<-b.readTurns
		if done || err != nil {
			return res, err
		}
		if expired == nil {
			if o.Wait <= 0 {
				return pollEnded(res, offset), nil
			}
			t := time.NewTimer(o.Wait) // only once a read found nothing
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-ch:
		case <-expired:
			return pollEnded(res, offset), nil
		case <-ctx.Done():
			return ReadResult{Next: offset, Min: res.Min, Max: res.Max}, ctx.Err()
		}
	}
}

// readOnce reads once; done says the read has its answer, else it waits.
func (b *Broker) readOnce(topic string, queue int, offset int64, n int, f storage.Filter, use func(*ReadResult)) (r ReadResult, done bool, err error) {
	res, err := b.store.Read(topic, queue, offset, storage.ReadOptions{MaxCount: n, Filter: f})
	r.Min, r.Max = b.store.Offsets(topic, queue)
	r.Next = res.Next
	var oe *storage.OffsetError
	switch {
	case errors.As(err, &oe) && offset < r.Min: // deleted by retention
		r.Next, r.Moved = r.Min, true
		return r, true, nil
	case errors.As(err, &oe): // past the indexed end: wait for it
		r.Next = offset
		return r, false, nil
	case err != nil:
		return r, true, fmt.Errorf("core: read %s/%d from %d: %w", topic, queue, offset, err)
	case len(res.Messages) > 0:
		r.Messages = res.Messages
		if use != nil {
			use(&r)
			res.Release() // Use copied out what it keeps: the memory serves the next read
			r.Messages = nil
		}
		return r, true, nil
	case res.Next > offset: // all passed over by the filter
		return r, true, nil
	}
	return r, false, nil
}

// pollEnded is a Read's answer when its wait ended with nothing found.
func pollEnded(last ReadResult, offset int64) ReadResult {
	if offset > last.Max { // still past the end: a queue that lost its tail
		return ReadResult{Next: last.Max, Min: last.Min, Max: last.Max, Moved: true}
	}
	return ReadResult{Next: offset, Min: last.Min, Max: last.Max}
}

// readFilter turns a subscription filter into the store's read filter:
// the index's subject hashes first, then the subject itself, or for a
// SQL92 filter the message's properties (the hash cannot rule a message
// out: it says maybe).
func readFilter(f route.Filter) storage.Filter {
	if f.All() {
		return nil
	}
	if f.SQL92() {
		return propertyFilter{f.WithHash(storage.SubjectHash)}
	}
	return subjectFilter{f.WithHash(storage.SubjectHash)}
}

type subjectFilter struct{ h route.HashFilter }

func (f subjectFilter) MatchHash(h uint32) bool       { return f.h.MatchHash(h) }
func (f subjectFilter) Match(m *storage.Message) bool { return f.h.Match(m.Subject) }

type propertyFilter struct{ h route.HashFilter }

func (f propertyFilter) MatchHash(h uint32) bool { return f.h.MatchHash(h) }
func (f propertyFilter) Match(m *storage.Message) bool {
	return f.h.MatchMessage(m.Subject, route.MessageProperties(m.Subject, m.Keys, m.Properties.Lookup))
}

// Offsets returns a queue's first and end offsets: messages [min, max)
// are readable. A queue never written has 0, 0.
func (b *Broker) Offsets(topic string, queue int) (min, max int64) {
	if isInternalTopic(topic) {
		return 0, 0
	}
	return b.store.Offsets(topic, queue)
}

// OffsetForTime returns the first offset of a queue whose message was
// stored at or after t, or the queue's end if none was.
func (b *Broker) OffsetForTime(topic string, queue int, t time.Time) (int64, error) {
	if isInternalTopic(topic) {
		return 0, fmt.Errorf("%w: %q is the broker's own", ErrUnknownTopic, topic)
	}
	return b.store.OffsetForTime(topic, queue, t)
}

// MessageAt returns the message stored at a log offset (its place in the
// broker's log, which its id carries); ErrNotFound when there is none.
func (b *Broker) MessageAt(logOffset int64) (Message, error) {
	m, err := b.store.ReadAt(logOffset)
	if err == nil && isStateTopic(m.Topic) {
		return Message{}, fmt.Errorf("%w: log offset %d holds the broker's own state", ErrNotFound, logOffset)
	}
	return m, err
}

// MessagesByKey returns up to max messages of any topic carrying key
// (Message.Keys), newest first.
func (b *Broker) MessagesByKey(key string, max int) ([]Message, error) {
	return b.store.LookupKey(key, max)
}

// SyncFlush reports whether a publish is durable only once on disk (the
// store's sync flush): a front-end then acknowledges after WaitDurable.
func (b *Broker) SyncFlush() bool { return b.store.SyncFlush() }

// DataDir is the directory the broker's store is in.
func (b *Broker) DataDir() string { return b.store.Dir() }
