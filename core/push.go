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
		work     = make([]chan *Delivery, o.Concurrency)
	)
	for i := range work {
		work[i] = make(chan *Delivery, o.Window)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work[i] {
				if ctx.Err() == nil {
					m.handle(ctx, handler, d)
				}
				inflight.Add(-1)
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
		for _, d := range ds {
			inflight.Add(1)
			w := next
			if d.inPlace {
				w = d.c.key.queue % o.Concurrency // keep each queue on one handler, in order
			} else {
				next = (next + 1) % o.Concurrency
			}
			work[w] <- d
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
