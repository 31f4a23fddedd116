package core

import (
	"context"
	"errors"
	"time"

	"github.com/ferrymq/ferry/storage"
)

// expireDeliveries takes back deliveries not acknowledged within
// AckTimeout: they are retried as failed ones are (the retry topic in
// clustering, in place for ordered and broadcasting members). The member's
// late ack, if it comes, is stale.
func (b *Broker) expireDeliveries(now time.Time) {
	type overdue struct {
		g   *group
		c   *cursor
		gen uint64
		off int64
		m   *Member
	}
	var due []overdue
	deadline := now.Add(-b.cfg.AckTimeout)
	b.mu.Lock()
	for _, g := range b.groups {
		g.mu.Lock()
		for _, c := range g.cursors {
			for _, p := range c.pending {
				if !p.acked && p.at.Before(deadline) && c.owner != nil {
					due = append(due, overdue{g, c, c.gen, p.off, c.owner})
				}
			}
		}
		g.mu.Unlock()
	}
	b.mu.Unlock()
	for _, o := range due {
		res, err := b.store.Read(o.c.key.topic, o.c.key.queue, o.off, storage.ReadOptions{MaxCount: 1})
		if err != nil || len(res.Messages) == 0 || res.Messages[0].QueueOffset != o.off {
			continue // gone (retention); the cursor moves past it on its next read
		}
		o.g.mu.Lock()
		var d Delivery
		o.m.delivery(&d, o.c, &res.Messages[0])
		d.gen = o.gen
		o.g.mu.Unlock()
		b.logger.Warn("core: delivery not acknowledged in time; retrying it", "group", o.g.name, "member", o.m.id,
			"topic", o.c.key.topic, "queue", o.c.key.queue, "offset", o.off, "ack-timeout", b.cfg.AckTimeout)
		if err := o.m.Nack(context.Background(), &d, errors.New("not acknowledged within the ack timeout")); err != nil &&
			!errors.Is(err, ErrStaleDelivery) {
			b.logger.Error("core: retry of an overdue delivery", "err", err)
		}
	}
}
