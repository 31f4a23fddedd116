package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
)

// An inbound session is one consuming connection, and one goroutine (the
// run loop's): it takes what RabbitMQ has delivered (up to Prefetch), stores
// it in the core in batches, one per routing key so that each key keeps its
// order in one core queue, and acks RabbitMQ up to the last delivery stored.
// When the session ends, RabbitMQ requeues what was not acked, in place,
// and delivers it again to the next session (marked redelivered); the
// queue's single active consumer (QueueArgs) makes the next session wait
// until that is done. Deliveries of an old channel are never acked on a new
// one.

// inbound runs one inbound session; connected reports whether it got as far
// as consuming.
func (b *Bridge) inbound(ctx context.Context) (connected bool, err error) {
	conn, err := b.dial("consume")
	if err != nil {
		return false, err
	}
	defer closeConn(conn, b.cfg.Timeout)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))

	var ch *amqp.Channel
	if err := b.rpc(ctx, conn, "open channel", func() (err error) { ch, err = conn.Channel(); return err }); err != nil {
		return false, err
	}
	cancelled := ch.NotifyCancel(make(chan string, 1))
	if err := b.rpc(ctx, conn, "qos", func() error { return ch.Qos(b.cfg.Prefetch, 0, false) }); err != nil {
		return false, err
	}
	if err := b.declare(ctx, conn, ch); err != nil {
		return false, err
	}
	var deliveries <-chan amqp.Delivery
	err = b.rpc(ctx, conn, "consume "+b.cfg.Queue, func() (err error) {
		deliveries, err = ch.Consume(b.cfg.Queue, GroupName(b.cfg.Name), false, false, false, false, nil)
		return err
	})
	if err != nil {
		return false, err
	}
	// The queue's depth is asked on a channel of its own: a failed check
	// (the queue deleted, say) closes that channel, not the consuming one.
	var inspect *amqp.Channel
	if err := b.rpc(ctx, conn, "open channel", func() (err error) { inspect, err = conn.Channel(); return err }); err != nil {
		return false, err
	}
	b.setState(StateConnected)
	b.logger.Info("rabbitmq bridge: consuming", "rabbitmq", b.cfg.Origin, "queue", b.cfg.Queue)
	b.checkLag(ctx, conn, inspect)
	lagTick := time.NewTicker(b.cfg.LagInterval)
	defer lagTick.Stop()

	batch := make([]amqp.Delivery, 0, b.cfg.Prefetch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-lagTick.C:
			b.checkLag(ctx, conn, inspect)
			continue
		case e, ok := <-closed:
			if ok && e != nil {
				return true, fmt.Errorf("%w: %v", errConnClosed, e)
			}
			return true, errConnClosed
		case tag := <-cancelled:
			return true, fmt.Errorf("rabbitmq bridge: RabbitMQ cancelled consumer %s (queue deleted?)", tag)
		case d, ok := <-deliveries:
			if !ok {
				return true, errConnClosed
			}
			batch = append(batch, d)
		}
	more: // whatever else is delivered already joins the batch
		for len(batch) < cap(batch) {
			select {
			case d, ok := <-deliveries:
				if !ok {
					break more
				}
				batch = append(batch, d)
			default:
				break more
			}
		}
		if err := b.store(ctx, batch); err != nil {
			return true, err
		}
	}
}

// checkLag asks RabbitMQ how many messages of the queue are ready (waiting
// for the bridge): the inbound bridge's lag. Unknown (-1) when it cannot.
func (b *Bridge) checkLag(ctx context.Context, conn *amqp.Connection, ch *amqp.Channel) {
	var q amqp.Queue
	err := b.rpc(ctx, conn, "inspect queue "+b.cfg.Queue, func() (err error) {
		q, err = ch.QueueDeclarePassive(b.cfg.Queue, true, false, false, false, nil)
		return err
	})
	if err != nil {
		b.inboundLag.Store(-1)
		b.logger.Debug("rabbitmq bridge: queue depth unknown", "err", err)
		return
	}
	b.inboundLag.Store(int64(q.Messages))
}

// QueueArgs are the arguments an inbound bridge declares its queue with.
// A single active consumer keeps the queue's order through a reconnect:
// RabbitMQ hands the queue to the new connection only once the old one is
// gone and what it had not acked is back at the head of the queue. With
// several consumers, the new one could be given the messages behind those
// before they are requeued.
var QueueArgs = amqp.Table{"x-single-active-consumer": true}

// declare declares the inbound queue and its bindings when configured to.
func (b *Bridge) declare(ctx context.Context, conn *amqp.Connection, ch *amqp.Channel) error {
	if !b.cfg.DeclareQueue {
		return nil
	}
	err := b.rpc(ctx, conn, "declare queue "+b.cfg.Queue, func() error {
		_, err := ch.QueueDeclare(b.cfg.Queue, true, false, false, false, QueueArgs)
		return err
	})
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed {
		return fmt.Errorf("%w (the queue exists with other arguments: declare it with x-single-active-consumer, or set queue.declare to false to use it as it is)", err)
	}
	if err != nil {
		return err
	}
	for _, bd := range b.cfg.Bindings {
		err := b.rpc(ctx, conn, fmt.Sprintf("bind %s to %s with %q", b.cfg.Queue, bd.Exchange, bd.Key), func() error {
			return ch.QueueBind(b.cfg.Queue, bd.Key, bd.Exchange, false, nil)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// store puts a batch into the core, then acks it to RabbitMQ. A message the
// core can never take (too large, invalid) is rejected without requeue, so
// that RabbitMQ's own dead-lettering applies; any other failure ends the
// session, and RabbitMQ delivers again.
func (b *Bridge) store(ctx context.Context, batch []amqp.Delivery) error {
	type run struct {
		msgs []*core.Message
		idx  []int // in batch
	}
	var order []string
	runs := map[string]*run{}
	for i := range batch {
		d := &batch[i]
		if d.Redelivered {
			b.duplicates.Add(1)
		}
		m, dropped := message(b.cfg.Topic, b.cfg.Origin, d)
		if dropped > 0 {
			b.logger.Warn("rabbitmq bridge: headers dropped (too long, or a table or array)", "count", dropped, "routing-key", d.RoutingKey)
		}
		r := runs[d.RoutingKey]
		if r == nil {
			r = &run{}
			runs[d.RoutingKey] = r
			order = append(order, d.RoutingKey)
		}
		r.msgs, r.idx = append(r.msgs, m), append(r.idx, i)
	}
	var rejected []int
	for _, key := range order {
		r := runs[key]
		for len(r.msgs) > 0 {
			res, err := b.broker.PublishBatch(ctx, r.msgs, core.PublishOptions{Queue: core.QueueAuto, ShardKey: key})
			if err == nil {
				break
			}
			if !errors.Is(err, core.ErrMessageTooLarge) && !errors.Is(err, core.ErrInvalidMessage) {
				return fmt.Errorf("store in %s: %w", b.cfg.Topic, err)
			}
			n := len(res) // stored before the one refused
			b.logger.Error("rabbitmq bridge: message refused by the store; rejecting it", "routing-key", key, "err", err)
			rejected = append(rejected, r.idx[n])
			r.msgs, r.idx = r.msgs[n+1:], r.idx[n+1:]
		}
	}
	if len(rejected) == 0 {
		if err := batch[len(batch)-1].Ack(true); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		b.forwarded.Add(uint64(len(batch)))
		return nil
	}
	isRejected := map[int]bool{}
	for _, i := range rejected {
		isRejected[i] = true
	}
	for i := range batch {
		var err error
		if isRejected[i] {
			err = batch[i].Reject(false)
			b.rejected.Add(1)
		} else {
			err = batch[i].Ack(false)
			b.forwarded.Add(1)
		}
		if err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
	return nil
}
