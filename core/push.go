package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// PushOptions shape Consume.
type PushOptions struct {
	// Concurrency is the number of handler goroutines (default 4). In an
	// ordered member each queue's messages go to one of them, in order.
	Concurrency int
	// Window bounds the messages delivered and not yet handled (default 256).
	Window int
	// Batch is the most messages one pull takes (default 32).
	Batch int
}

// Consume pushes the member's messages to handler until ctx ends: the core
// pulls (long polling) while fewer than Window messages are in the
// handlers' hands. A nil error from handler acknowledges the message; an
// error or a panic is a Nack (retried later). Consume returns when ctx ends
// and every handler has returned; messages taken but not handled then are
// delivered again later.
func (m *Member) Consume(ctx context.Context, handler func(context.Context, *Delivery) error, o PushOptions) error {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Window <= 0 {
		o.Window = 256
	}
	if o.Batch <= 0 {
		o.Batch = 32
	}
	var (
		inflight atomic.Int64
		room     = make(chan struct{}, 1)
		wg       sync.WaitGroup
		work     = make([]chan []*Delivery, o.Concurrency) // batches: one hand-off per pull, not per message
	)
	for i := range work {
		work[i] = make(chan []*Delivery, o.Window)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range work[i] {
				for _, d := range batch {
					if ctx.Err() == nil {
						m.handle(ctx, handler, d)
					}
					inflight.Add(-1)
				}
				select {
				case room <- struct{}{}:
				default:
				}
			}
		}()
	}
	defer func() {
		for _, w := range work {
			close(w)
		}
		wg.Wait()
	}()
	next := 0
	for {
		free := int64(o.Window) - inflight.Load()
		if free <= 0 {
			select {
			case <-room:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		ds, err := m.Pull(ctx, min(int(free), o.Batch))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		inflight.Add(int64(len(ds)))
		for len(ds) > 0 {
			// An ordered queue's run of messages goes to one handler
			// goroutine, in order; other messages are spread in chunks.
			n := (len(ds) + o.Concurrency - 1) / o.Concurrency
			w := next
			if ds[0].inPlace {
				n = 1
				for n < len(ds) && ds[n].c == ds[0].c {
					n++
				}
				w = ds[0].c.key.queue % o.Concurrency
			} else {
				next = (next + 1) % o.Concurrency
			}
			work[w] <- ds[:n:n]
			ds = ds[n:]
		}
	}
}

func (m *Member) handle(ctx context.Context, handler func(context.Context, *Delivery) error, d *Delivery) {
	if d.inPlace && m.stale(d) {
		return // an earlier message of its queue failed: it comes again, in order
	}
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("core: handler panicked: %v", p)
			}
		}()
		return handler(ctx, d)
	}()
	if err == nil {
		err = m.Ack(d)
		if err != nil && !errors.Is(err, ErrStaleDelivery) {
			m.g.b.logger.Error("core: ack", "group", m.g.name, "err", err)
		}
		return
	}
	if nerr := m.Nack(ctx, d, err); nerr != nil && !errors.Is(nerr, ErrStaleDelivery) {
		m.g.b.logger.Error("core: could not schedule a retry; the message is delivered again later",
			"group", m.g.name, "err", nerr)
	}
}
