package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Transactional messages, as RocketMQ has them. A producer sends a half
// message (PublishHalf): it is stored in the internal topic %TRANS_HALF%
// with its real topic and queue in properties, where no consumer reads it.
// The producer runs its local transaction and ends it (EndTransaction):
// commit copies the half message to its real topic, where it is delivered
// from then on; rollback drops it. A half message left unresolved is
// checked: the core asks a front-end (OnTransactionCheck) to ask a live
// producer of the group, first TransactionCheckDelay after the send, then
// every TransactionCheckInterval, and after TransactionMaxChecks checks it
// is discarded and logged.
//
// Which half messages are pending is state in the log: a record
// "core/tx/OFFSET" (the half message's log offset) per pending half
// message, with its group, its key (UNIQ_KEY), the checks made and when the
// next is due. Resolving deletes the record; a commit stores the message
// on its real topic and deletes the record in one append, so a restart
// after a crash never delivers a committed message twice nor loses it.
// The state log already replays, compacts and guards its records against
// retention, which an op topic of resolutions (RocketMQ's) would need
// again.
//
// Goroutine: the checker, owned by the Broker and stopped by Close. Lock:
// transactions.mu is a leaf; a check's state write is made under it, so
// that a record a check updates is never written after the delete of a
// resolution (which takes the entry out of the map under mu first).
const (
	halfTopic = "%TRANS_HALF%"
	txPrefix  = coreNamespace + "/tx/"

	// RocketMQ's property names, which its clients read on a check.
	propTranPrepared  = "TRAN_MSG"
	propProducerGroup = "PGROUP"
	propUniqKey       = "UNIQ_KEY"
)

// Transaction errors.
var (
	// ErrUnknownTransaction: no pending half message is at the offset or
	// has the key an end names (resolved already, discarded, or never).
	ErrUnknownTransaction = errors.New("core: no pending transaction")
	// ErrInvalidTransaction: a half message that cannot be one.
	ErrInvalidTransaction = errors.New("core: invalid transactional message")
)

// pendingTx is a pending half message's state record.
type pendingTx struct {
	Group  string `json:"group"`
	Key    string `json:"key,omitempty"`
	Checks int    `json:"checks"`
	Next   int64  `json:"next"` // when the next check is due, unix ns
}

// TransactionCheck is what a front-end needs to ask a producer of Group
// about a half message.
type TransactionCheck struct {
	Group string
	// Message is the half message as the producer sent it: its real topic
	// and queue, LogOffset its place in the log (what an end names),
	// QueueOffset its offset in the half topic.
	Message Message
	// ID is the half message's id (the one its send answered).
	ID string
	// Check counts the checks: 1 for the first.
	Check int
}

// TransactionState is a half message's state as the core knows it.
type TransactionState struct {
	Pending bool // waiting for its end; false: resolved or discarded
	Group   string
	Checks  int       // the checks made so far
	Next    time.Time // when the next check (or the discard) is due
}

type transactions struct {
	b *Broker

	mu       sync.Mutex
	pending  map[int64]*pendingTx // by the half message's log offset
	byKey    map[string]int64     // UNIQ_KEY → log offset
	checkers []func(TransactionCheck) bool
	wake     chan struct{} // a half message was added; capacity 1
}

func txKey(off int64) string { return txPrefix + strconv.FormatInt(off, 10) }

// loadTransactions replays the pending half messages' records.
func loadTransactions(b *Broker) (*transactions, error) {
	t := &transactions{b: b, pending: map[int64]*pendingTx{}, byKey: map[string]int64{}, wake: make(chan struct{}, 1)}
	err := b.state.each(txPrefix, func(key string, val []byte) error {
		off, err := strconv.ParseInt(strings.TrimPrefix(key, txPrefix), 10, 64)
		if err != nil {
			return fmt.Errorf("core: state record %s: %w", key, err)
		}
		p := &pendingTx{}
		if err := json.Unmarshal(val, p); err != nil {
			return fmt.Errorf("core: state record %s: %w", key, err)
		}
		t.add(off, p)
		return nil
	})
	return t, err
}

// add indexes p. Caller holds mu, or t is not shared yet.
func (t *transactions) add(off int64, p *pendingTx) {
	t.pending[off] = p
	if p.Key != "" {
		t.byKey[p.Key] = off
	}
}

// remove takes off's entry out. Caller holds mu.
func (t *transactions) remove(off int64) {
	if p := t.pending[off]; p != nil && t.byKey[p.Key] == off {
		delete(t.byKey, p.Key)
	}
	delete(t.pending, off)
}

// OnTransactionCheck makes fn ask producers about unresolved half messages.
// fn must not block (hand the request off); it reports whether it found a
// producer of the group to ask. A check is counted either way: a group
// with no live producer for TransactionMaxChecks checks loses its half
// messages, as in RocketMQ.
func (b *Broker) OnTransactionCheck(fn func(TransactionCheck) bool) {
	b.tx.mu.Lock()
	b.tx.checkers = append(b.tx.checkers, fn)
	b.tx.mu.Unlock()
}

// PublishHalf stores m as the half message of a transaction of the
// producer group its property PGROUP names, and returns once it and its
// pending record are durable. m goes to its topic (created when
// auto-creation is on) and queue once committed; until then no consumer
// sees it. The result's LogOffset is what EndTransaction names; its Topic
// and QueueID are the real ones, QueueOffset the half topic's.
func (b *Broker) PublishHalf(ctx context.Context, m *Message, o PublishOptions) (PublishResult, error) {
	if b.isClosed() {
		return PublishResult{}, ErrClosed
	}
	if b.cfg.Follower {
		return PublishResult{}, errFollower
	}
	group := m.Properties.Get(propProducerGroup)
	switch {
	case group == "":
		return PublishResult{}, fmt.Errorf("%w: no producer group (property %s): no producer could be asked about it", ErrInvalidTransaction, propProducerGroup)
	case o.DelayLevel != 0 || m.DeliverAt != 0:
		return PublishResult{}, fmt.Errorf("%w: a transactional message cannot be delayed", ErrInvalidTransaction)
	}
	tp, created, err := b.topicFor(m.Topic, o.CreateQueues)
	if err != nil {
		return PublishResult{}, err
	}
	q, err := b.pickQueue(tp, o)
	if err != nil {
		return PublishResult{}, err
	}
	half := parked(m, q, halfTopic, 0)
	res, err := b.store1(ctx, []*Message{&half})
	if err != nil {
		return PublishResult{}, err
	}
	m.QueueID, m.LogOffset = q, half.LogOffset
	p := &pendingTx{Group: group, Key: m.Properties.Get(propUniqKey), Next: time.Now().Add(b.cfg.TransactionCheckDelay).UnixNano()}
	raw, _ := json.Marshal(p)
	if err := b.state.write(ctx, []stateChange{{key: txKey(half.LogOffset), val: raw}}, true); err != nil {
		// Unanswered, the send failed: the half message stays invisible
		// and nothing checks it.
		return PublishResult{}, fmt.Errorf("core: record the half message: %w", err)
	}
	b.tx.mu.Lock()
	b.tx.add(half.LogOffset, p)
	b.tx.mu.Unlock()
	select {
	case b.tx.wake <- struct{}{}:
	default:
	}
	r := res[0]
	r.Topic, r.QueueID, r.Created = m.Topic, q, created
	return r, nil
}

// EndTransaction names the half message a transaction's end resolves.
type EndTransaction struct {
	// Group is the producer group ending it; "" skips the check that it is
	// the group that sent it.
	Group string
	// LogOffset is the half message's (its send's LogOffset); Key, its
	// UNIQ_KEY, finds it when no pending half message is at LogOffset.
	LogOffset int64
	Key       string
	// Commit delivers the message; false rolls it back.
	Commit bool
}

// EndTransaction commits or rolls back a pending half message. allow, when
// set, sees the message (its real topic and queue) before anything is
// done; its error refuses the end. ErrUnknownTransaction: nothing pending
// matches (resolved already, or discarded).
func (b *Broker) EndTransaction(ctx context.Context, e EndTransaction, allow func(*Message) error) error {
	if b.isClosed() {
		return ErrClosed
	}
	t := b.tx
	t.mu.Lock()
	off := e.LogOffset
	p := t.pending[off]
	if p == nil || (e.Key != "" && p.Key != "" && p.Key != e.Key) {
		if o, ok := t.byKey[e.Key]; ok && e.Key != "" {
			off, p = o, t.pending[o]
		} else {
			p = nil
		}
	}
	if p == nil || (e.Group != "" && p.Group != e.Group) {
		t.mu.Unlock()
		return fmt.Errorf("%w: log offset %d, key %q, group %q", ErrUnknownTransaction, e.LogOffset, e.Key, e.Group)
	}
	t.remove(off) // claimed: a check no longer updates it
	t.mu.Unlock()
	err := b.resolve(ctx, off, e.Commit, allow)
	if err != nil && !errors.Is(err, errHalfGone) {
		t.mu.Lock()
		t.add(off, p) // nothing was resolved: still pending
		t.mu.Unlock()
	}
	return err
}

var errHalfGone = errors.New("the half message is no longer in the log")

// resolve commits or rolls back the half message at off, claimed.
func (b *Broker) resolve(ctx context.Context, off int64, commit bool, allow func(*Message) error) error {
	half, err := b.halfAt(off)
	if err != nil {
		b.dropPending(off, "its half message is gone: "+err.Error())
		return fmt.Errorf("core: end transaction at %d: %w: %v", off, errHalfGone, err)
	}
	real := restoreHalf(&half)
	if allow != nil {
		if err := allow(&real); err != nil {
			return err
		}
	}
	del := stateChange{key: txKey(off), del: true}
	if !commit {
		return b.state.write(ctx, []stateChange{del}, true)
	}
	tp, _, err := b.topicFor(real.Topic, 0)
	if err != nil {
		return fmt.Errorf("core: commit transaction at %d: %w", off, err)
	}
	if real.QueueID >= tp.Queues {
		real.QueueID = int(tp.rr.Add(1) % uint32(tp.Queues))
	}
	real.Properties.Del(propRealTopic)
	real.Properties.Del(propRealQueue)
	real.Properties.Del(propTranPrepared)
	real.LogOffset, real.QueueOffset, real.StoreTime = 0, 0, 0
	_, err = b.storeWithState(ctx, []*Message{&real}, del)
	return err
}

// halfAt reads the half message at off.
func (b *Broker) halfAt(off int64) (Message, error) {
	m, err := b.store.ReadAt(off)
	if err == nil && m.Topic != halfTopic {
		err = fmt.Errorf("%w: log offset %d holds a message of %s, not a half message", ErrNotFound, off, m.Topic)
	}
	return m, err
}

// restoreHalf is the half message as its producer sent it: its real topic
// and queue, its log and half-queue offsets kept.
func restoreHalf(h *Message) Message {
	m := *h
	m.Properties = h.Properties.Clone(0)
	m.Topic = h.Properties.Get(propRealTopic)
	m.QueueID, _ = strconv.Atoi(h.Properties.Get(propRealQueue))
	return m
}

// dropPending deletes off's record (its entry is out of the map already)
// and logs why.
func (b *Broker) dropPending(off int64, why string) {
	if err := b.state.write(context.Background(), []stateChange{{key: txKey(off), del: true}}, true); err != nil {
		b.logger.Error("core: deleting a half message's record", "offset", off, "err", err)
	}
	b.logger.Warn("core: half message discarded: "+why, "id", b.store.MessageID(off))
}

// TransactionState reports the state of the half message at logOffset.
func (b *Broker) TransactionState(logOffset int64) TransactionState {
	b.tx.mu.Lock()
	defer b.tx.mu.Unlock()
	p := b.tx.pending[logOffset]
	if p == nil {
		return TransactionState{}
	}
	return TransactionState{Pending: true, Group: p.Group, Checks: p.Checks, Next: time.Unix(0, p.Next)}
}

// IsHalfTopic reports whether topic is the internal topic of half messages.
func IsHalfTopic(topic string) bool { return topic == halfTopic }

// runChecks checks the due half messages until stop, sleeping until the
// next is due or a half message is added.
func (t *transactions) runChecks(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := t.checkDue(time.Now())
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-stop:
			return
		case <-t.wake:
		case <-timer.C:
		}
	}
}

// checkDue checks, or discards after the last check, the half messages due
// at now, and returns when the next is due (zero if none is pending).
func (t *transactions) checkDue(now time.Time) time.Time {
	b, cfg := t.b, t.b.cfg
	type due struct {
		off int64
		p   pendingTx
	}
	var dues []due
	t.mu.Lock()
	for off, p := range t.pending {
		if p.Next <= now.UnixNano() {
			dues = append(dues, due{off, *p})
		}
	}
	checkers := t.checkers
	t.mu.Unlock()
	sort.Slice(dues, func(i, j int) bool { return dues[i].off < dues[j].off })

	var discard []int64
	var checked []int64
	for _, d := range dues {
		if d.p.Checks >= cfg.TransactionMaxChecks {
			discard = append(discard, d.off)
			continue
		}
		half, err := b.halfAt(d.off)
		if err != nil {
			b.logger.Error("core: half message unreadable; discarded", "offset", d.off, "group", d.p.Group, "err", err)
			discard = append(discard, d.off)
			continue
		}
		chk := TransactionCheck{Group: d.p.Group, Message: restoreHalf(&half), ID: b.store.MessageID(d.off), Check: d.p.Checks + 1}
		asked := false
		for _, fn := range checkers {
			asked = fn(chk) || asked
		}
		if !asked {
			b.logger.Warn("core: no live producer of the group to check a half message with", "id", chk.ID,
				"group", d.p.Group, "check", chk.Check, "of", cfg.TransactionMaxChecks)
		}
		checked = append(checked, d.off)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	var changes []stateChange
	for _, off := range discard {
		p := t.pending[off]
		if p == nil {
			continue // resolved meanwhile
		}
		b.logger.Warn("core: half message unresolved after its last check; discarded", "id", b.store.MessageID(off),
			"group", p.Group, "key", p.Key, "checks", p.Checks)
		t.remove(off)
		changes = append(changes, stateChange{key: txKey(off), del: true})
	}
	nextCheck := now.Add(cfg.TransactionCheckInterval).UnixNano()
	for _, off := range checked {
		p := t.pending[off]
		if p == nil {
			continue
		}
		p.Checks++
		p.Next = nextCheck
		raw, _ := json.Marshal(p)
		changes = append(changes, stateChange{key: txKey(off), val: raw})
	}
	if len(changes) > 0 {
		// Under mu: a resolution's delete cannot come before this write.
		if err := b.state.write(context.Background(), changes, true); err != nil {
			b.logger.Error("core: saving the checks of half messages", "err", err)
		}
	}
	var next time.Time
	for _, p := range t.pending {
		if n := time.Unix(0, p.Next); next.IsZero() || n.Before(next) {
			next = n
		}
	}
	return next
}
