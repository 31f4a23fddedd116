package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/route"
)

// An outbound session is one publishing connection. Its goroutines:
//
//   - the publisher (the session's own): pulls from the bridge's group
//     while fewer than Window publishes are unconfirmed (one, while the
//     bridge probes: see Bridge.probe), publishes each message with a
//     deferred confirm and queues it, in order;
//   - the confirmer: takes the queue in order, waits for each confirm and
//     acks the message to the group (the broker saves committed offsets
//     every flush interval: commits are batched); a nack or a return
//     follows the bridge's policy;
//   - the watcher: drains the connection's and channel's close and blocked
//     notifications, and heartbeats the group member;
//   - the closer: closes the connection once the session is cancelled.
//
// Any failure cancels the session; the connection is closed, the four
// goroutines end, and the member leaves the group, which rewinds its queues
// to the committed offsets: what was not confirmed is sent again, in order,
// by the next session.

var (
	errConnClosed     = errors.New("rabbitmq bridge: connection closed")
	errBlockedTooLong = errors.New("rabbitmq bridge: connection blocked too long; reconnecting")
	errNoConfirm      = errors.New("rabbitmq bridge: no publisher confirm in time")
	errNacked         = errors.New("rabbitmq bridge: message nacked by RabbitMQ")
	errReturned       = errors.New("rabbitmq bridge: message returned unroutable (no queue bound for its routing key)")
	errCoreClosed     = errors.New("rabbitmq bridge: core closed")
)

type pending struct {
	d  *core.Delivery
	dc *amqp.DeferredConfirmation
	id string
}

type outSession struct {
	b      *Bridge
	ch     *amqp.Channel
	member *core.Member
	ctx    context.Context
	cancel context.CancelCauseFunc

	queue       chan pending  // published, in order; the confirmer's input
	outstanding atomic.Int64  // published and not yet resolved
	room        chan struct{} // the confirmer made room in the window
	blocked     atomic.Bool
	resume      chan struct{} // RabbitMQ unblocked the connection
}

// outbound runs one outbound session; connected reports whether it got as
// far as publishing.
func (b *Bridge) outbound(ctx context.Context) (connected bool, err error) {
	conn, err := b.dial("publish")
	if err != nil {
		return false, err
	}
	defer closeConn(conn, b.cfg.Timeout)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))

	var ch *amqp.Channel
	if err := b.rpc(ctx, conn, "open channel", func() (err error) { ch, err = conn.Channel(); return err }); err != nil {
		return false, err
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	// At most one return per outstanding publish: the buffer never fills,
	// so the client never drops one.
	returns := ch.NotifyReturn(make(chan amqp.Return, b.cfg.Window+1))
	if err := b.rpc(ctx, conn, "confirm.select", func() error { return ch.Confirm(false) }); err != nil {
		return false, err
	}
	if b.cfg.DeclareExchange {
		err := b.rpc(ctx, conn, "declare exchange "+b.cfg.Exchange, func() error {
			return ch.ExchangeDeclare(b.cfg.Exchange, b.cfg.ExchangeKind, true, false, false, false, nil)
		})
		if err != nil {
			return false, err
		}
	}

	filter, _ := route.ParseFilter(b.cfg.Filter) // validated in New
	member, err := b.broker.Join(GroupName(b.cfg.Name), b.cfg.Name, core.MemberOptions{
		Subscriptions: []core.GroupSub{{Topic: b.cfg.Topic, Filter: filter}},
		StartFrom:     core.StartFrom{Kind: core.StartFirst}, // where no offset is committed: see anchor
	})
	if err != nil {
		return false, fmt.Errorf("join group %s: %w", GroupName(b.cfg.Name), err)
	}
	// Leaving rewinds what was not confirmed: the next session sends it again.
	defer member.Leave()

	sctx, cancel := context.WithCancelCause(ctx)
	s := &outSession{b: b, ch: ch, member: member, ctx: sctx, cancel: cancel,
		queue: make(chan pending, b.cfg.Window), room: make(chan struct{}, 1), resume: make(chan struct{}, 1)}
	b.setState(StateConnected)
	b.logger.Info("rabbitmq bridge: connected", "rabbitmq", b.cfg.Origin, "exchange", b.cfg.Exchange)

	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		// The closer: once the session ends, close the connection. Closing
		// sets a deadline on the socket, so a publish stuck writing to a
		// blocked or dead one returns too.
		defer wg.Done()
		<-sctx.Done()
		closeConn(conn, b.cfg.Timeout)
	}()
	go func() {
		defer wg.Done()
		s.watch(closed, chClosed, blocked)
	}()
	go func() {
		defer wg.Done()
		s.confirm(returns)
	}()
	s.publish()
	cancel(nil)
	wg.Wait()
	if n := s.outstanding.Load(); n > 0 {
		b.duplicates.Add(uint64(n)) // RabbitMQ may have them; they are sent again
	}
	err = context.Cause(sctx)
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return true, err
}

// publish is the publisher loop; it returns when the session ends.
func (s *outSession) publish() {
	b := s.b
	for s.ctx.Err() == nil {
		for s.outstanding.Load() >= s.window() {
			select {
			case <-s.room:
			case <-s.ctx.Done():
				return
			}
		}
		for s.blocked.Load() {
			select {
			case <-s.resume:
			case <-s.ctx.Done():
				return
			}
		}
		free := int(s.window() - s.outstanding.Load())
		ds, err := s.member.Pull(s.ctx, min(free, 256))
		if err != nil {
			if errors.Is(err, core.ErrClosed) {
				err = errCoreClosed
			}
			s.cancel(fmt.Errorf("read group %s: %w", GroupName(b.cfg.Name), err))
			return
		}
		for _, d := range ds {
			hop := hops(d.Properties.Get(HeaderHops)) + 1
			if d.Properties.Get(HeaderOrigin) == b.cfg.Origin || hop > b.cfg.MaxHops {
				b.loops.Add(1)
				b.logger.Debug("rabbitmq bridge: not sending a message back", "origin", d.Properties.Get(HeaderOrigin), "hops", hop)
				s.ack(d)
				continue
			}
			id := b.broker.OriginalID(d.Message)
			dc, err := s.ch.PublishWithDeferredConfirmWithContext(s.ctx, b.cfg.Exchange, routingKey(b.cfg.RoutingKey, d.Message),
				true, false, publishing(d.Message, id, hop))
			if err != nil {
				s.cancel(fmt.Errorf("publish: %w", err))
				return
			}
			s.outstanding.Add(1)
			s.queue <- pending{d: d, dc: dc, id: id} // room for Window: never blocks
		}
	}
}

// window is how many publishes may be unconfirmed now.
func (s *outSession) window() int64 {
	if s.b.probe.Load() {
		return 1
	}
	return int64(s.b.cfg.Window)
}

func (s *outSession) ack(d *core.Delivery) {
	if err := s.member.Ack(d); err != nil {
		s.b.logger.Error("rabbitmq bridge: ack to the group", "err", err)
	}
}

// confirm resolves the publishes in order; it returns when the session ends.
func (s *outSession) confirm(returns <-chan amqp.Return) {
	b := s.b
	returned := map[string]bool{}
	timer := time.NewTimer(b.cfg.ConfirmTimeout)
	defer timer.Stop()
	for {
		var p pending
		select {
		case p = <-s.queue:
		case <-s.ctx.Done():
			return
		}
		timer.Reset(b.cfg.ConfirmTimeout)
	wait:
		for {
			select {
			case <-p.dc.Done():
				break wait
			case <-s.ctx.Done():
				return
			case <-timer.C:
				if s.blocked.Load() { // the watcher bounds a blocked wait
					timer.Reset(b.cfg.ConfirmTimeout)
					continue
				}
				s.cancel(fmt.Errorf("%w (%v)", errNoConfirm, b.cfg.ConfirmTimeout))
				return
			}
		}
		// RabbitMQ sends a message's return before its confirm, and the
		// client hands the return over before it resolves the confirm: the
		// returns to see are in the channel now.
		for more := true; more; {
			select {
			case r, ok := <-returns:
				if ok {
					returned[r.MessageId] = true
				} else {
					more = false
				}
			default:
				more = false
			}
		}
		var reason error
		var policy Policy
		switch {
		case !p.dc.Acked() && s.ch.IsClosed():
			s.cancel(errConnClosed) // the client nacks what was pending when the channel went
			return
		case !p.dc.Acked():
			reason, policy = errNacked, b.cfg.OnNack
		case returned[p.id]:
			delete(returned, p.id)
			reason, policy = errReturned, b.cfg.OnReturn
		}
		if reason != nil {
			if policy == Retry {
				b.probe.Store(true)
				s.cancel(fmt.Errorf("%w; sending it again (message %s)", reason, p.id))
				return
			}
			if err := s.deadLetter(p.d, reason); err != nil {
				s.cancel(err)
				return
			}
		} else {
			b.forwarded.Add(1)
			b.probe.Store(false) // RabbitMQ takes messages again: open the window
		}
		s.ack(p.d)
		s.outstanding.Add(-1)
		select {
		case s.room <- struct{}{}:
		default:
		}
	}
}

// deadLetter stores a copy of d in the bridge's dead-letter topic.
func (s *outSession) deadLetter(d *core.Delivery, reason error) error {
	b := s.b
	m := *d.Message
	m.Properties = d.Properties.Clone(2)
	m.Properties.Set(PropDeadLetterReason, reason.Error())
	m.Properties.Set(HeaderTopic, d.Topic)
	m.Topic = b.cfg.DeadLetterTopic
	// One dead-letter queue per source queue: what is set aside keeps its order.
	key := d.Topic + "/" + strconv.Itoa(d.QueueID)
	if _, err := b.broker.Publish(s.ctx, &m, core.PublishOptions{Queue: core.QueueAuto, ShardKey: key}); err != nil {
		return fmt.Errorf("store in dead-letter topic %s: %w", b.cfg.DeadLetterTopic, err)
	}
	b.deadLettered.Add(1)
	b.logger.Warn("rabbitmq bridge: message set aside", "reason", reason, "dlq", b.cfg.DeadLetterTopic)
	return nil
}

// watch drains the connection's notifications and keeps the member alive
// while the publisher waits; it returns when the session ends.
func (s *outSession) watch(closed, chClosed <-chan *amqp.Error, blocked <-chan amqp.Blocking) {
	b := s.b
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var blockedSince time.Time
	for {
		select {
		case e, ok := <-closed:
			if ok && e != nil {
				s.cancel(fmt.Errorf("%w: %v", errConnClosed, e))
			} else {
				s.cancel(errConnClosed)
			}
			return
		case e, ok := <-chClosed:
			if ok && e != nil {
				s.cancel(fmt.Errorf("rabbitmq bridge: channel closed: %v", e))
			} else {
				s.cancel(errConnClosed)
			}
			return
		case bl, ok := <-blocked:
			if !ok {
				s.cancel(errConnClosed)
				return
			}
			if bl.Active {
				blockedSince = time.Now()
				s.blocked.Store(true)
				b.setState(StateBlocked)
				b.logger.Warn("rabbitmq bridge: RabbitMQ blocks publishing", "reason", bl.Reason)
			} else {
				blockedSince = time.Time{}
				s.blocked.Store(false)
				b.setState(StateConnected)
				b.logger.Info("rabbitmq bridge: RabbitMQ unblocked publishing")
				select {
				case s.resume <- struct{}{}:
				default:
				}
			}
		case now := <-tick.C:
			s.member.Heartbeat()
			if !blockedSince.IsZero() && now.Sub(blockedSince) > b.cfg.BlockedTimeout {
				s.cancel(fmt.Errorf("%w (%v)", errBlockedTooLong, b.cfg.BlockedTimeout))
				return
			}
		case <-s.ctx.Done():
			return
		}
	}
}
