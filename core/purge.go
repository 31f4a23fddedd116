package core

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// purgeIndexWait bounds PurgeTopic's wait for the index (a sync master's
// index waits for its replicas).
const purgeIndexWait = 5 * time.Second

// PurgeTopic skips a topic's backlog for every group that reads it: each
// group's offset on each queue of the topic it reads moves to the queue's
// end (SetOffset), so that the messages stored so far are delivered to no
// one. The messages stay in the log, readable by offset and id, until
// retention removes them: Ferry's log is shared by every topic, so a purge
// deletes nothing. It returns the groups moved. As with SetOffset, a
// native consumer that keeps its own position overwrites the move with its
// next commit: purge while such consumers are stopped.
func (b *Broker) PurgeTopic(name string) ([]string, error) {
	tp := b.topics.get(name)
	if tp == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	// The end of a queue is what its index covers: let the index catch up
	// with every message stored before the purge, or a group would be
	// moved short of messages acknowledged just before it.
	ctx, cancel := context.WithTimeout(context.Background(), purgeIndexWait)
	err := b.store.WaitIndexed(ctx, b.store.EndOffset())
	cancel()
	if err != nil {
		b.logger.Warn("core: purging before the index covers the whole log", "topic", name, "err", err)
	}
	var moved []string
	var errs []error
	for _, g := range b.Groups() {
		info, err := b.Group(g)
		if err != nil { // deleted since Groups listed it
			continue
		}
		hit := false
		for _, q := range info.Queues {
			if q.Topic != name || q.Queue >= tp.Queues {
				continue
			}
			if err := b.SetOffset(g, name, q.Queue, math.MaxInt64); err != nil { // clamped to the queue's end
				errs = append(errs, fmt.Errorf("group %s, queue %d: %w", g, q.Queue, err))
				continue
			}
			hit = true
		}
		if hit {
			moved = append(moved, g)
		}
	}
	return moved, errors.Join(errs...)
}
