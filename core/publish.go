package core

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/storage"
)

// QueueAuto lets the broker pick the queue: by ShardKey's hash when one is
// given, else round robin.
const QueueAuto = -1

// PublishOptions say where a message goes and when.
type PublishOptions struct {
	// Queue is the queue to publish into, or QueueAuto.
	Queue int
	// ShardKey, with QueueAuto, picks the queue by its hash: messages with
	// the same key keep their order.
	ShardKey string
	// DelayLevel (1..len(DelayLevels)) delays delivery by that level's time.
	// The message's own DeliverAt, when set, is any future time.
	DelayLevel int
	// NoWait returns once the messages are appended, before they are
	// durable under the flush policy; WaitDurable(ctx, res.End) waits for
	// that. A front-end with many messages in flight on one connection uses
	// it to acknowledge them in order as one fsync covers them. (Delayed
	// messages always wait.)
	NoWait bool
	// Deferred, with NoWait, leaves the write of the messages to the
	// caller, who makes them durable soon with WriteNow or WaitDurable:
	// the store's committer is not woken for them. A front-end that
	// reads a burst of publishes on one connection writes them once, at
	// the burst's end, on its own goroutine.
	Deferred bool
	// CreateQueues is the queue count of the topic when this publish
	// creates it (auto-creation): RocketMQ's producers ask for theirs
	// (defaultTopicQueueNums) after capping TBW102's at it, and pick queues
	// by that count. 0 takes Config.DefaultQueues, which also caps it: that
	// is the count TBW102 is advertised with.
	CreateQueues int
	// Results, with NoWait, is room for the results: PublishBatch
	// returns them in it when it has room for them all. A front-end
	// answering many publishes at once gives one slice for all (the
	// results of each are a slice of it), not one allocation each.
	Results []PublishResult
}

// PublishResult is where a message was stored.
type PublishResult struct {
	LogOffset   int64
	LogID       uint64
	Topic       string
	QueueID     int
	QueueOffset int64
	// Delayed is set when the message waits in the scheduler: MessageID and
	// the offsets are then those of the scheduled copy.
	Delayed bool
	// End is the log offset the message's record ends at, for WaitDurable.
	End int64
	// Created is set when this publish created its topic (auto-creation).
	Created bool
	// Retained is set when the message was handed to a live subscription
	// (Subscribe), which may keep it, and the memory of its body, after
	// the publish returns. Otherwise, once a publish that did not wait in
	// the scheduler (Delayed) returns, nothing of the broker holds the
	// message's body: the store has its own copy.
	Retained bool
}

// WaitDurable returns once everything stored up to the log offset end is
// durable under the flush policy (see PublishOptions.NoWait).
func (b *Broker) WaitDurable(ctx context.Context, end int64) error {
	return b.store.WaitDurable(ctx, end)
}

// WriteNow makes everything stored up to the log offset end durable on
// the calling goroutine when that takes no waiting, and says whether it
// did (see storage.Store.WriteNow); when it did not, WaitDurable waits.
func (b *Broker) WriteNow(end int64) (bool, error) {
	return b.store.WriteNow(end)
}

// MessageID is the stored message's id (made on demand: publishing does not
// pay for the hex encoding).
func (r PublishResult) MessageID() string { return storage.MessageID(r.LogID, r.LogOffset) }

// Publish stores m and returns once it is durable under the store's flush
// policy; live subscriptions matching it get it then. m's QueueID is set.
func (b *Broker) Publish(ctx context.Context, m *Message, o PublishOptions) (PublishResult, error) {
	res, err := b.PublishBatch(ctx, []*Message{m}, o)
	if err != nil {
		return PublishResult{}, err
	}
	return res[0], nil
}

// PublishBatch stores msgs, which go to one topic, under one store lock and
// (sync flush) one fsync. With QueueAuto and no ShardKey the batch goes to
// one queue, chosen round robin.
func (b *Broker) PublishBatch(ctx context.Context, msgs []*Message, o PublishOptions) ([]PublishResult, error) {
	if b.isClosed() {
		return nil, ErrClosed
	}
	if b.cfg.Follower {
		return nil, errFollower
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	name := msgs[0].Topic
	tp, created, err := b.topicFor(name, o.CreateQueues)
	if err != nil {
		return nil, err
	}
	q, err := b.pickQueue(tp, o)
	if err != nil {
		return nil, err
	}
	var deliverAt int64
	if o.DelayLevel != 0 {
		if o.DelayLevel < 1 || o.DelayLevel > len(b.cfg.DelayLevels) {
			return nil, fmt.Errorf("%w: delay level %d: want 1..%d", ErrInvalidDelay, o.DelayLevel, len(b.cfg.DelayLevels))
		}
		deliverAt = time.Now().Add(b.cfg.DelayLevels[o.DelayLevel-1]).UnixNano()
	}
	now := time.Now().UnixNano()
	var delayed []*Message
	for _, m := range msgs {
		if m.Topic != name {
			return nil, fmt.Errorf("core: a batch goes to one topic: %q and %q", name, m.Topic)
		}
		m.QueueID = q
		if deliverAt != 0 {
			m.DeliverAt = deliverAt
		}
		if m.DeliverAt > now {
			delayed = append(delayed, m)
		}
	}
	var res []PublishResult
	switch {
	case len(delayed) > 0 && len(delayed) != len(msgs):
		return nil, fmt.Errorf("core: a batch is all delayed or all immediate")
	case len(delayed) > 0:
		res, err = b.sched.schedule(ctx, msgs)
	case o.NoWait:
		res, err = b.storeNoWait(msgs, o.Results, o.Deferred)
	default:
		res, err = b.store1(ctx, msgs)
	}
	if created {
		for i := range res {
			res[i].Created = true
		}
	}
	return res, err
}

// store1 appends msgs as they are (topic and queue set) and routes them to
// live subscriptions.
func (b *Broker) store1(ctx context.Context, msgs []*Message) ([]PublishResult, error) {
	if err := b.admit(); err != nil {
		return b.stored(msgs, 0, err, nil)
	}
	n, err := b.store.AppendBatch(ctx, msgs)
	return b.stored(msgs, n, err, nil)
}

// storeNoWait is store1 without waiting for durability; deferred leaves
// their write to the caller (PublishOptions.Deferred).
func (b *Broker) storeNoWait(msgs []*Message, room []PublishResult, deferred bool) ([]PublishResult, error) {
	if err := b.admit(); err != nil {
		return b.stored(msgs, 0, err, nil)
	}
	add := b.store.AppendBatchNoWait
	if deferred {
		add = b.store.AppendBatchDeferred
	}
	n, _, err := add(msgs)
	return b.stored(msgs, n, err, room)
}

// admit returns why a message append would be refused before it is made:
// the core is a follower, or the store's gate would not acknowledge it
// (storage.Store.Admit).
func (b *Broker) admit() error {
	if b.cfg.Follower {
		return errFollower
	}
	return b.store.Admit()
}

// storeWithState stores msgs and then the state change c in one append,
// and waits for durability under the flush policy: c records what storing
// msgs did, and a restart finds both or, if the process died before they
// were written, neither. (An append that spans two write buffers is
// written by two writes: a crash between them keeps the messages and
// loses the change, so what c guards happens again: twice, never never.)
func (b *Broker) storeWithState(ctx context.Context, msgs []*Message, c stateChange) ([]PublishResult, error) {
	n, end, err := b.state.appendWith(msgs, c)
	res, err := b.stored(msgs, n, err, nil)
	if err == nil {
		err = b.store.WaitDurable(ctx, end)
	}
	return res, err
}

// stored accounts and routes msgs[:n], which the store took. Their results
// are in room when it has room for them all.
func (b *Broker) stored(msgs []*Message, n int, err error, room []PublishResult) ([]PublishResult, error) {
	if err != nil && n == 0 {
		return nil, fmt.Errorf("core: publish to %s: %w", msgs[0].Topic, err)
	}
	b.countStored(msgs[:n])
	res := room
	if cap(res) < n {
		res = make([]PublishResult, n)
	}
	res = res[:n]
	for i, m := range msgs[:n] {
		res[i] = PublishResult{LogOffset: m.LogOffset, LogID: b.store.LogID(), Topic: m.Topic, QueueID: m.QueueID,
			QueueOffset: m.QueueOffset, End: m.LogOffset + int64(m.Size)}
		if b.liveSubs.Load() > 0 { // without live subscriptions, skip the table's locks
			r := &res[i]
			hand := func(s *Subscription) { r.Retained = true; s.fn(m) }
			b.live.Match(m.Topic, m.Subject, hand)
			b.live.Match(AnyTopic, m.Subject, hand)
		}
	}
	if err != nil {
		return res, fmt.Errorf("core: publish to %s: %d of %d stored: %w", msgs[0].Topic, n, len(msgs), err)
	}
	return res, nil
}

// topicFor returns the topic a publish goes to, auto-created if allowed,
// and whether it created it.
func (b *Broker) topicFor(name string, createQueues int) (*topic, bool, error) {
	if tp := b.topics.get(name); tp != nil {
		return tp, false, nil
	}
	if err := checkName("topic", name); err != nil {
		return nil, false, err
	}
	if !b.cfg.AutoCreateTopics {
		return nil, false, fmt.Errorf("%w: %q (create it first; auto-creation is off)", ErrUnknownTopic, name)
	}
	queues := b.cfg.DefaultQueues
	if createQueues > 0 {
		queues = min(createQueues, queues)
	}
	tp, created, err := b.topics.ensure(name, queues)
	if err != nil {
		return nil, false, err
	}
	if created {
		b.topicChanged(name) // groups waiting for it get its queues
	}
	return tp, created, nil
}

func (b *Broker) pickQueue(tp *topic, o PublishOptions) (int, error) {
	switch {
	case o.Queue >= 0:
		if o.Queue >= tp.Queues {
			return 0, fmt.Errorf("%w: queue %d of %q, which has %d", ErrInvalidQueue, o.Queue, tp.Name, tp.Queues)
		}
		return o.Queue, nil
	case o.ShardKey != "":
		h := fnv.New32a()
		h.Write([]byte(o.ShardKey))
		return int(h.Sum32() % uint32(tp.Queues)), nil
	default:
		return int(tp.rr.Add(1) % uint32(tp.Queues)), nil
	}
}

// AnyTopic, as a live subscription's topic, matches every topic; its filter
// applies to the subject.
const AnyTopic = ""

// Subscription is a live subscription: it gets each matching message as it
// is stored, from any publisher. It has no offsets: it is for subscribers
// that are there now (MQTT's non-persistent subscribers).
type Subscription struct {
	b      *Broker
	topic  string
	filter route.Filter
	fn     func(*Message)
}

// Subscribe adds a live subscription to topic (or AnyTopic) with a filter.
// fn is called on the publisher's goroutine: it must not block (hand off to
// a bounded queue of its own) and must not change the message.
func (b *Broker) Subscribe(topic string, filter route.Filter, fn func(*Message)) (*Subscription, error) {
	if topic != AnyTopic {
		if err := storage.ValidTopic(topic); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidName, err)
		}
	}
	if filter.Union() {
		return nil, fmt.Errorf("core: live subscription to %q: a union of filters (%s) is for consumer groups; subscribe once per filter", topic, filter)
	}
	if filter.SQL92() {
		return nil, fmt.Errorf("core: live subscription to %q: a SQL92 filter (%s) is for reads and consumer groups", topic, filter)
	}
	s := &Subscription{b: b, topic: topic, filter: filter, fn: fn}
	if b.live.Add(topic, filter, s) {
		b.liveSubs.Add(1)
	}
	return s, nil
}

// Close removes the subscription.
func (s *Subscription) Close() {
	if s.b.live.Remove(s.topic, s.filter, s) {
		s.b.liveSubs.Add(-1)
	}
}
