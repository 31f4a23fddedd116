package core

import (
	"fmt"
	"strings"

	"github.com/ferrymq/ferry/storage"
)

// What operators ask of the core besides what clients do (the admin API):
// a message by its id, the reason a message was dead-lettered, one queue's
// offset set by hand.

// MessageID is the id of the message stored at logOffset: what a publish
// answered for it, and what MessageByID takes.
func (b *Broker) MessageID(logOffset int64) string { return b.store.MessageID(logOffset) }

// MessageByID returns the message with an id MessageID or a publish gave;
// ErrNotFound when the id is not of this broker's log, the message was
// deleted by retention, or it is the broker's own state.
func (b *Broker) MessageByID(id string) (Message, error) {
	_, off, err := storage.ParseMessageID(id) // wraps ErrNotFound
	if err != nil {
		return Message{}, err
	}
	m, err := b.store.Get(id)
	if err != nil {
		return Message{}, err
	}
	if isInternalTopic(m.Topic) {
		return Message{}, fmt.Errorf("%w: log offset %d holds the broker's own state", ErrNotFound, off)
	}
	return m, nil
}

// DeadLetterReason is why a message of a dead-letter topic was moved
// there (the last error its consumer gave, or the attempts counted), ""
// for any other message.
func DeadLetterReason(m *Message) string {
	if !strings.HasPrefix(m.Topic, dlqPrefix) {
		return ""
	}
	return m.Properties.Get(propDLQReason)
}

// SetOffset moves a group's offset on one queue to off, clamped to the
// queue's readable range: its next delivery there is the message at that
// offset. Messages in flight on that queue are delivered again from there.
// A member that keeps its own position (a self-rebalancing client, which
// commits its offsets) overwrites it with its next commit: set offsets of
// such a group while its consumers are stopped.
func (b *Broker) SetOffset(groupName, topic string, queue int, off int64) error {
	if err := checkName("group", groupName); err != nil {
		return err
	}
	tp := b.topics.get(topic)
	if tp == nil {
		return fmt.Errorf("%w: %q", ErrUnknownTopic, topic)
	}
	if queue < 0 || queue >= tp.Queues {
		return fmt.Errorf("%w: queue %d of %q: want 0..%d", ErrInvalidQueue, queue, topic, tp.Queues-1)
	}
	lo, hi := b.store.Offsets(topic, queue)
	off = max(lo, min(off, hi))
	key := cursorKey{topic: topic, queue: queue}
	b.mu.Lock()
	g := b.groups[groupName]
	b.mu.Unlock()
	b.savedMu.Lock()
	b.setSavedLocked(groupName, key.offsetKey(), off)
	b.offsetsSaved = 0 // save even if no cursor moved
	b.savedMu.Unlock()
	if g != nil {
		g.mu.Lock()
		if c := g.cursors[key]; c != nil {
			c.reset(off)
		}
		g.mu.Unlock()
	}
	b.offsetsChanged()
	return b.saveOffsets()
}
