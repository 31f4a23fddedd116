package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// TransactionState is how a local transaction ended, as the producer
// tells the broker.
type TransactionState int

const (
	// TransactionUnknown leaves the half message to the broker, which asks
	// the producer group (TransactionChecker) later.
	TransactionUnknown TransactionState = iota
	// TransactionCommit delivers the message.
	TransactionCommit
	// TransactionRollback drops it: it is never delivered.
	TransactionRollback
)

func (s TransactionState) String() string {
	switch s {
	case TransactionCommit:
		return "commit"
	case TransactionRollback:
		return "rollback"
	default:
		return "unknown"
	}
}

// RocketMQ's transaction bits (MessageSysFlag): a send's and an end's.
const (
	txPrepared = 0x4
	txCommit   = 0x8
	txRollback = 0xC
)

// Properties of a transactional message (RocketMQ's).
const (
	propTranPrepared  = "TRAN_MSG"
	propProducerGroup = "PGROUP"
)

// TransactionChecker answers the broker's question about a half message
// whose local transaction ended unknown (or whose end was lost): m is the
// half message as sent (its topic, tag, keys, properties, body, and ID,
// SendResult.MsgID). It runs on a goroutine of the producer's, one check
// at a time; the broker asks again later while it returns
// TransactionUnknown, up to its limit of checks (15 by default), then
// drops the message.
type TransactionChecker func(ctx context.Context, m *MessageExt) TransactionState

// LocalTransaction runs the producer's own transaction once the half
// message is stored (res says where) and says how it ended.
type LocalTransaction func(ctx context.Context, m *Message, res SendResult) TransactionState

// checksQueued bounds the checks waiting for the checker: one more is
// dropped (the broker asks again at its next interval).
const checksQueued = 256

// TransactionProducer sends transactional messages, as RocketMQ's
// transaction producer does: SendInTransaction stores a half message,
// which no consumer sees, runs the local transaction, and commits or rolls
// the message back as it ended. It also sends ordinary messages (the
// embedded Producer). It heartbeats as a member of its producer group
// (WithGroup: every producer of a group must be able to answer for the
// group's transactions) to the brokers it sent to, which ask it about
// half messages left unknown; the checker answers.
//
// Goroutines, stopped by Close: the checker's and the heartbeat's.
type TransactionProducer struct {
	*Producer
	check  TransactionChecker
	checks chan txCheck
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	loops  sync.WaitGroup
	id     string

	mu      sync.Mutex
	brokers map[string]bool // the addresses heartbeated to
}

type txCheck struct {
	addr string
	req  *remoting.Command
	msg  *MessageExt
}

// NewTransactionProducer makes a transaction producer; check answers the
// broker's checks. Give it its own group (WithGroup): the broker asks any
// live producer of the group that sent a half message.
func NewTransactionProducer(check TransactionChecker, opts ...Option) (*TransactionProducer, error) {
	if check == nil {
		return nil, fmt.Errorf("client: transaction producer: %w: no checker", ErrInvalidOption)
	}
	t := &TransactionProducer{check: check, checks: make(chan txCheck, checksQueued), id: clientID(), brokers: map[string]bool{}}
	p, err := newProducer(buildOptions(opts), t.serveRequest)
	if err != nil {
		return nil, err
	}
	t.Producer = p
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.loops.Add(2)
	go t.runChecks()
	go func() {
		defer t.loops.Done()
		t.heartbeatEvery()
	}()
	return t, nil
}

// Close stops the checker and the heartbeats, then closes the producer.
func (t *TransactionProducer) Close() error {
	t.cancel()
	t.loops.Wait()
	return t.Producer.Close()
}

// SendInTransaction stores m as a half message, runs local, and ends the
// transaction as local says: commit delivers m, rollback drops it,
// unknown leaves it to the broker's checks. It returns the half message's
// send result and local's state; an error before local ran means nothing
// was stored (local did not run). The end is sent one-way, as RocketMQ's
// clients send it; if it is lost, the broker's check resolves the
// message. m cannot be delayed.
func (t *TransactionProducer) SendInTransaction(ctx context.Context, m *Message, local LocalTransaction) (SendResult, TransactionState, error) {
	if err := t.enter(); err != nil {
		return SendResult{}, TransactionUnknown, err
	}
	defer t.sends.Done()
	if err := m.validate(); err != nil {
		return SendResult{}, TransactionUnknown, err
	}
	if m.delayed() || !m.DeliverAt.IsZero() {
		return SendResult{}, TransactionUnknown, fmt.Errorf("%w: a transactional message cannot be delayed", ErrInvalidMessage)
	}
	rt, err := t.routes.get(ctx, m.Topic)
	if err != nil {
		return SendResult{}, TransactionUnknown, fmt.Errorf("client: send to %q: %w", m.Topic, err)
	}
	for _, addr := range rt.addrs {
		t.heartbeat(ctx, addr, false) // before the send: a check finds this producer
	}
	wp := m.wireProperties(t.ids.next())
	wp[propTranPrepared] = "true"
	wp[propProducerGroup] = t.opts.group
	props := remoting.EncodeProperties(wp)
	res, err := t.sendWith(ctx, m.Topic, m.ShardingKey, wp[propUniqKey], false, func(q messageQueue) *remoting.Command {
		return t.requestFlag(remoting.SendMessageV2, m.Topic, q.ID, txPrepared, props, false, m.Body)
	})
	if err != nil {
		return SendResult{}, TransactionUnknown, err
	}
	state := local(ctx, m, res)
	if state == TransactionUnknown {
		return res, state, nil
	}
	addr := rt.addrs[res.Broker]
	end := endRequest(t.opts.group, res.QueueOffset, logOffsetOf(res.OffsetMsgID), res.MsgID, state, false)
	if err := t.pool.oneway(ctx, addr, end); err != nil {
		return res, state, fmt.Errorf("client: end the transaction of %s (the broker's check will): %w", res.MsgID, err)
	}
	return res, state, nil
}

// endRequest is END_TRANSACTION's request.
func endRequest(group string, queueOffset, logOffset int64, msgID string, state TransactionState, fromCheck bool) *remoting.Command {
	how := txCommit
	if state == TransactionRollback {
		how = txRollback
	}
	return remoting.NewRequest(remoting.EndTransaction, remoting.Pairs(
		"producerGroup", group,
		"tranStateTableOffset", strconv.FormatInt(queueOffset, 10),
		"commitLogOffset", strconv.FormatInt(logOffset, 10),
		"commitOrRollback", strconv.Itoa(how),
		"fromTransactionCheck", strconv.FormatBool(fromCheck),
		"msgId", msgID,
		"transactionId", msgID,
	), nil)
}

// logOffsetOf reads the commit-log offset a broker's message id carries;
// -1 if it is not one. The broker also finds the half message by its
// UNIQ_KEY.
func logOffsetOf(offsetMsgID string) int64 {
	_, off, err := remoting.ParseOffsetMsgID(offsetMsgID)
	if err != nil {
		return -1
	}
	return off
}

// serveRequest serves what a broker sends on the producer's connections:
// CHECK_TRANSACTION_STATE is queued for the checker. It runs on the
// connection's reader and never blocks.
func (t *TransactionProducer) serveRequest(addr string, req *remoting.Command) *remoting.Command {
	if req.Code != remoting.CheckTransactionState {
		return nil
	}
	msgs, err := decodeMessages(req.Body)
	if err != nil || len(msgs) != 1 {
		t.logger.Warn("client: a transaction check without its message", "broker", addr, "err", err)
		return nil
	}
	if g := msgs[0].Properties[propProducerGroup]; g != t.opts.group {
		t.logger.Warn("client: a transaction check for another producer group", "broker", addr, "group", g)
		return nil
	}
	select {
	case t.checks <- txCheck{addr: addr, req: req, msg: msgs[0]}:
	default:
		t.logger.Warn("client: transaction checks queued past the limit; the broker asks again", "broker", addr, "id", msgs[0].ID)
	}
	return nil
}

// runChecks answers the broker's checks, one at a time, until Close.
func (t *TransactionProducer) runChecks() {
	defer t.loops.Done()
	for {
		select {
		case <-t.ctx.Done():
			return
		case c := <-t.checks:
			state := t.check(t.ctx, c.msg)
			if state == TransactionUnknown {
				continue
			}
			off, err := c.req.ExtInt("commitLogOffset")
			if err != nil {
				off = c.msg.LogOffset
			}
			qoff, _ := c.req.ExtInt("tranStateTableOffset")
			end := endRequest(t.opts.group, qoff, off, c.msg.ID, state, true)
			ctx, cancel := context.WithTimeout(t.ctx, t.opts.requestTimeout)
			if err := t.pool.oneway(ctx, c.addr, end); err != nil && t.ctx.Err() == nil {
				t.logger.Warn("client: answering a transaction check", "broker", c.addr, "id", c.msg.ID, "err", err)
			}
			cancel()
		}
	}
}

// heartbeatEvery heartbeats to the brokers sent to, until Close: a
// connection dialled again (a broker restarted) is known as the group's
// producer again.
func (t *TransactionProducer) heartbeatEvery() {
	tick := time.NewTicker(t.opts.heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
			t.mu.Lock()
			addrs := slices.Collect(maps.Keys(t.brokers))
			t.mu.Unlock()
			for _, a := range addrs {
				t.heartbeat(t.ctx, a, true)
			}
		}
	}
}

// heartbeat tells the broker at addr that this client is a producer of the
// group; again only when again is set.
func (t *TransactionProducer) heartbeat(ctx context.Context, addr string, again bool) {
	t.mu.Lock()
	known := t.brokers[addr]
	t.brokers[addr] = true
	t.mu.Unlock()
	if known && !again {
		return
	}
	body, err := json.Marshal(heartbeatData{ClientID: t.id, ProducerDataSet: []producerData{{t.opts.group}}, ConsumerDataSet: []consumerData{}})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.requestTimeout)
	defer cancel()
	if _, err := t.pool.call(ctx, addr, remoting.NewRequest(remoting.HeartBeat, nil, body)); err != nil && !errors.Is(err, context.Canceled) {
		t.logger.Warn("client: producer heartbeat failed", "broker", addr, "err", err)
		t.mu.Lock()
		delete(t.brokers, addr) // the next send tries again
		t.mu.Unlock()
	}
}
