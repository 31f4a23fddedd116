package amqp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/route"
)

// memberID is the id of a queue's one member in its consumer group: the
// queue's dispatcher, which hands what it pulls to the queue's consumers.
const memberID = "amqp"

// idleBeat is how often an idle dispatcher tells the core its member is
// alive, and trims a queue over x-max-length.
const idleBeat = time.Second

// boundTo is a binding with its exchange.
type boundTo struct {
	rec bindingRec
	x   *exchange
}

// held is a delivery the dispatcher holds for a consumer: pulled and not
// yet sent, or sent, requeued and waiting to be sent again.
type held struct {
	d           *core.Delivery
	redelivered bool
}

// queue is an AMQP queue: a core consumer group whose subscriptions are
// its bindings (and the default exchange's), read by one member, whose
// dispatcher gives the messages to the queue's consumers in turn, within
// their prefetch. Delivery, offsets and retries are the core's; requeued
// messages are held here, unacknowledged in the core, and sent first.
type queue struct {
	v     *vhost
	name  string
	owner *conn // exclusive queues' connection

	mu        sync.Mutex
	r         queueRec
	bound     []boundTo
	member    *core.Member
	consumers []*consumer
	rr        int
	held      []held
	closed    bool

	// The dispatcher's, reused from batch to batch.
	batch  []held
	routed []routed

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newQueue(v *vhost, name string, rec queueRec, owner *conn) *queue {
	ctx, cancel := context.WithCancel(context.Background())
	q := &queue{v: v, name: name, owner: owner, r: rec, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		done: make(chan struct{})}
	for _, b := range rec.Bindings {
		if x := v.exchanges[b.Exchange]; x != nil {
			q.bound = append(q.bound, boundTo{b, x})
		}
	}
	return q
}

// currentMember is the queue's member now: join replaces it.
func (q *queue) currentMember() *core.Member {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.member
}

func (q *queue) rec() queueRec {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.r
}

// hasBinding reports whether one of the queue's bindings satisfies ok,
// looking at them in place (a mandatory publish asks every queue).
func (q *queue) hasBinding(ok func(*bindingRec) bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range q.r.Bindings {
		if ok(&q.r.Bindings[i]) {
			return true
		}
	}
	return false
}

// subs are the core subscriptions of the queue's bindings.
func (q *queue) subsLocked() []core.GroupSub {
	subs := []core.GroupSub{{Topic: DefaultTopic, Filter: route.Exact(q.name), Since: time.Unix(0, q.r.Declared)}}
	for _, b := range q.bound {
		subs = append(subs, b.rec.sub(b.x))
	}
	return subs
}

// join joins (or updates) the queue's member with its subscriptions.
func (q *queue) join() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.joinLocked()
}

func (q *queue) joinLocked() error {
	m, err := q.v.s.broker.Join(q.r.Group, memberID, core.MemberOptions{Mode: core.Clustering, Subscriptions: q.subsLocked(),
		StartFrom: core.StartFrom{Kind: core.StartTime, Time: time.Unix(0, q.r.Declared)}})
	if err != nil {
		return fmt.Errorf("amqp: queue %q: joining its consumer group: %w", q.name, err)
	}
	q.member = m
	return nil
}

// save writes a durable queue's record, bindings included.
func (q *queue) save() error {
	q.mu.Lock()
	r := q.r
	q.mu.Unlock()
	if !r.Durable || r.Exclusive {
		return nil
	}
	return q.v.state.Save("q/"+q.name, r)
}

func (q *queue) start() {
	go q.run()
}

// bind adds a binding and subscribes the group to what it reads.
func (q *queue) bind(x *exchange, b bindingRec) error {
	q.mu.Lock()
	for _, o := range q.r.Bindings {
		if o.Exchange == b.Exchange && o.Key == b.Key {
			q.mu.Unlock()
			return nil
		}
	}
	q.r.Bindings = append(q.r.Bindings, b)
	q.bound = append(q.bound, boundTo{b, x})
	err := q.joinLocked()
	q.mu.Unlock()
	if err != nil {
		return internalErr(err)
	}
	if x.rec.Durable {
		if err := q.save(); err != nil {
			return internalErr(err)
		}
	}
	return nil
}

// unbind removes the binding to exchange with key.
func (q *queue) unbind(exchange, key string) error {
	return q.unbindWhere(func(b bindingRec) bool { return b.Exchange == exchange && b.Key == key })
}

// unbindAll removes every binding to exchange.
func (q *queue) unbindAll(exchange string) error {
	return q.unbindWhere(func(b bindingRec) bool { return b.Exchange == exchange })
}

func (q *queue) unbindWhere(drop func(bindingRec) bool) error {
	q.mu.Lock()
	q.r.Bindings = slices.DeleteFunc(q.r.Bindings, drop)
	q.bound = slices.DeleteFunc(q.bound, func(b boundTo) bool { return drop(b.rec) })
	err := q.joinLocked()
	q.mu.Unlock()
	if err != nil {
		return internalErr(err)
	}
	if err := q.save(); err != nil {
		return internalErr(err)
	}
	return nil
}

// messageCount is how many messages wait in the queue: the group's lag,
// less what is delivered and unacknowledged, plus what is held. It counts
// the messages of the topics the queue reads that its bindings would pass
// over too (see docs/amqp.md).
func (q *queue) messageCount() uint32 {
	info, err := q.v.s.broker.Group(q.rec().Group)
	var n int64
	if err == nil {
		for _, gq := range info.Queues {
			n += gq.Lag - int64(gq.InFlight)
		}
	}
	q.mu.Lock()
	n += int64(len(q.held))
	q.mu.Unlock()
	return uint32(max(0, min(n, 1<<32-1)))
}

func (q *queue) consumerCount() uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return uint32(len(q.consumers))
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// addConsumer adds c; exclusive asks to be the queue's only consumer.
func (q *queue) addConsumer(c *consumer, exclusive bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return chanErr(codeNotFound, fmt.Sprintf("no queue '%s' in vhost '/'", q.name))
	}
	for _, o := range q.consumers {
		if o.exclusive || exclusive {
			return chanErr(codeAccessRefused, fmt.Sprintf("queue '%s' in vhost '/' in exclusive use", q.name))
		}
	}
	c.exclusive = exclusive
	q.consumers = append(q.consumers, c)
	q.signal()
	return nil
}

// removeConsumer removes c; an auto-delete queue goes with its last one.
func (q *queue) removeConsumer(c *consumer) {
	q.mu.Lock()
	q.consumers = slices.DeleteFunc(q.consumers, func(o *consumer) bool { return o == c })
	last := len(q.consumers) == 0 && q.r.AutoDelete && !q.closed
	q.mu.Unlock()
	if last {
		if _, err := q.v.deleteQueue(q, false, false); err != nil {
			q.v.s.log.Warn("amqp: auto-deleting a queue", "queue", q.name, "err", err)
		}
	}
}

// requeue puts a delivered message back at the head of the queue, to be
// delivered again with redelivered set.
func (q *queue) requeue(hs ...held) {
	q.mu.Lock()
	for i := range hs {
		hs[i].redelivered = true
	}
	q.held = append(hs, q.held...)
	q.mu.Unlock()
	q.signal()
}

// ack acknowledges d in the core.
func (q *queue) ack(d *core.Delivery) {
	q.ackBy(q.currentMember(), d)
	q.signal()
}

// ackBy acknowledges d with member m; a delivery the member no longer
// owns is no error.
func (q *queue) ackBy(m *core.Member, d *core.Delivery) {
	if err := m.Ack(d); err != nil && !errors.Is(err, core.ErrStaleDelivery) {
		q.v.s.log.Warn("amqp: acknowledging a delivery", "queue", q.name, "err", err)
	}
}

// ackAll acknowledges us in the core: each run of one queue's deliveries
// (all of them, mostly) with one look at its member and one signal.
func ackAll(us []*unacked) {
	for i := 0; i < len(us); {
		q := us[i].q
		m := q.currentMember()
		for ; i < len(us) && us[i].q == q; i++ {
			q.ackBy(m, us[i].h.d)
		}
		q.signal()
	}
}

// discard drops d (rejected, nacked without requeue, expired): to the
// queue's dead-letter exchange when it has one, then acknowledged.
func (q *queue) discard(d *core.Delivery, exchange, key, reason string) {
	r := q.rec()
	if r.DLX != "" || r.HasDLRK {
		if r.HasDLRK {
			key = r.DLRK
		}
		if err := q.v.s.deadLetter(d.Message, q.name, r.DLX, exchange, key, reason); err != nil {
			q.v.s.log.Warn("amqp: dead-lettering a message", "queue", q.name, "dlx", r.DLX, "err", err)
		}
	}
	q.ack(d)
}

// pick returns a consumer with room for a delivery, in turn, and its room.
func (q *queue) pick() (*consumer, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.consumers)
	for i := 0; i < n; i++ {
		c := q.consumers[(q.rr+i)%n]
		if room := c.ch.room(c); room > 0 {
			q.rr = (q.rr + i + 1) % n
			return c, room
		}
	}
	return nil, 0
}

func (q *queue) popHeld() (held, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.held) == 0 {
		return held{}, false
	}
	h := q.held[0]
	q.held[0] = held{}
	q.held = q.held[1:]
	return h, true
}

// route finds the binding that took d: the exchange and the routing key it
// is delivered with. A message no binding takes (a core subscription reads
// more than its binding matches) is acknowledged and passed over; an
// expired one (x-message-ttl) discarded.
func (q *queue) route(d *core.Delivery) (exchange, key string, ok bool) {
	q.mu.Lock()
	ttl := q.r.TTL
	bound := q.bound
	q.mu.Unlock()
	if d.Topic == DefaultTopic {
		exchange, key, ok = defaultExchange, d.Subject, d.Subject == q.name
	}
	headers := d.Properties.Lookup
	for i := 0; !ok && i < len(bound); i++ {
		b := bound[i]
		switch {
		case b.x.rec.Topic == "" && (d.Topic == DefaultTopic || strings.HasPrefix(d.Topic, reservedTopic)):
			continue
		case b.x.rec.Topic != "" && b.x.rec.Topic != d.Topic:
			continue
		}
		k := keyOf(b.x, d.Topic, d.Subject)
		if b.rec.matches(b.x, k, headers) {
			exchange, key, ok = b.x.name, k, true
		}
	}
	if !ok {
		q.ack(d)
		return "", "", false
	}
	if ttl > 0 && d.StoreTime > 0 && time.Since(time.Unix(0, d.StoreTime)) > time.Duration(ttl)*time.Millisecond {
		q.discard(d, exchange, key, "expired")
		return "", "", false
	}
	return exchange, key, true
}

// run is the queue's dispatcher: while a consumer has room, it sends held
// messages first, then pulls from the core.
func (q *queue) run() {
	defer close(q.done)
	beat := time.NewTicker(idleBeat)
	defer beat.Stop()
	for {
		select {
		case <-q.ctx.Done():
			return
		case <-beat.C:
			q.idle()
		default:
		}
		c, room := q.pick()
		if c == nil {
			select {
			case <-q.ctx.Done():
				return
			case <-q.wake:
			case <-beat.C:
				q.idle()
			}
			continue
		}
		if q.dispatchHeld(c, room) {
			continue
		}
		ctx, cancel := context.WithTimeout(q.ctx, idleBeat)
		ds, err := q.currentMember().Pull(ctx, min(room, 64))
		cancel()
		switch {
		case q.ctx.Err() != nil:
			q.hold(ds)
			return
		case errors.Is(err, core.ErrNotMember):
			if err := q.join(); err != nil {
				q.v.s.log.Error("amqp: queue lost its consumer group member", "queue", q.name, "err", err)
			}
		case errors.Is(err, core.ErrClosed):
			return
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			q.v.s.log.Warn("amqp: reading a queue", "queue", q.name, "err", err)
		}
		q.hold(ds)
	}
}

// dispatchHeld sends consumer c up to room held deliveries in one batch;
// false when none is held. What c cannot take goes back to the head.
func (q *queue) dispatchHeld(c *consumer, room int) bool {
	q.mu.Lock()
	n := min(room, len(q.held))
	if n == 0 {
		q.mu.Unlock()
		return false
	}
	hs := q.batch[:0]
	hs = append(hs, q.held[:n]...)
	clear(q.held[:n])
	q.held = q.held[n:]
	q.mu.Unlock()
	rs := q.routed[:0]
	for _, h := range hs {
		if x, key, ok := q.route(h.d); ok {
			rs = append(rs, routed{h: h, exchange: x, key: key})
		}
	}
	sent := 0
	if len(rs) > 0 {
		sent = c.ch.deliverBatch(c, q, rs)
	}
	if back := rs[sent:]; len(back) > 0 {
		q.mu.Lock()
		held := make([]held, 0, len(back)+len(q.held))
		for _, r := range back {
			held = append(held, r.h)
		}
		q.held = append(held, q.held...)
		q.mu.Unlock()
	}
	clear(hs)
	clear(rs)
	q.batch, q.routed = hs[:0], rs[:0]
	return true
}

func (q *queue) hold(ds []*core.Delivery) {
	if len(ds) == 0 {
		return
	}
	q.mu.Lock()
	for _, d := range ds {
		q.held = append(q.held, held{d: d, redelivered: d.Attempt > 1})
	}
	q.mu.Unlock()
}

// idle keeps the member alive and the queue within x-max-length.
func (q *queue) idle() {
	q.mu.Lock()
	m, maxLen, group, subs := q.member, q.r.MaxLength, q.r.Group, q.subsLocked()
	q.mu.Unlock()
	m.Heartbeat()
	if maxLen > 0 {
		if _, err := q.v.s.broker.TrimBacklog(group, subs, maxLen); err != nil {
			q.v.s.log.Warn("amqp: trimming a queue to x-max-length", "queue", q.name, "err", err)
		}
	}
}

// recentPublish is how recent a publish makes an empty basic.get wait a
// little for the store's index to have it.
const recentPublish = 200 * time.Millisecond

// get takes one message for basic.get, or none.
func (q *queue) get() (held, string, string, bool) {
	for {
		h, ok := q.popHeld()
		if !ok {
			m := q.currentMember()
			// One look, no wait; but a publish of a moment ago may not be
			// in the queue's index yet: then a short wait for it.
			wait := time.Duration(0)
			if time.Since(time.Unix(0, q.v.s.lastPublish.Load())) < recentPublish {
				wait = recentPublish / 4
			}
			ctx, cancel := context.WithTimeout(q.ctx, wait)
			ds, _ := m.Pull(ctx, 1)
			cancel()
			if len(ds) == 0 {
				return held{}, "", "", false
			}
			h = held{d: ds[0], redelivered: ds[0].Attempt > 1}
		}
		if x, key, ok := q.route(h.d); ok {
			return h, x, key, true
		}
	}
}

// close stops the dispatcher. A deleted queue also cancels its consumers
// and its member leaves the group.
func (q *queue) close(deleted bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	cs := q.consumers
	q.consumers = nil
	q.mu.Unlock()
	q.cancel()
	<-q.done
	if deleted {
		for _, c := range cs {
			c.ch.cancelledByServer(c)
		}
	}
	q.mu.Lock()
	m := q.member
	q.held = nil
	q.mu.Unlock()
	m.Leave()
}

// purge drops the queue's ready messages: its group moves to the end of
// what it reads. Deliveries not yet acknowledged come again, as a
// restart would bring them (see docs/amqp.md).
func (q *queue) purge() error {
	q.mu.Lock()
	q.held = nil
	group := q.r.Group
	q.mu.Unlock()
	if err := q.v.s.broker.ResetOffsets(group, core.StartFrom{Kind: core.StartLast}); err != nil && !errors.Is(err, core.ErrUnknownGroup) {
		return internalErr(err)
	}
	return nil
}
