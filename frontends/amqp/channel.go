package amqp

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ferrymq/ferry/auth"
)

// consumer is a basic.consume of a channel on a queue.
type consumer struct {
	tag       string
	ch        *channel
	q         *queue
	noAck     bool
	exclusive bool
	prefetch  int // 0: no limit but the channel's
	unacked   int // under ch.mu
	ready     atomic.Bool
	cancelled bool // under ch.mu
}

// unacked is a delivery waiting for its ack.
type unacked struct {
	tag      uint64
	q        *queue
	h        held
	c        *consumer // nil for basic.get
	exchange string
	key      string
}

// publishing is a basic.publish whose content is being read.
type publishing struct {
	x         *exchange
	key       string
	mandatory bool
	hdr       *header
	body      []byte
}

// txOp is an operation held back by a transaction until tx.commit; undo,
// when set, runs at tx.rollback instead.
type txOp struct {
	run  func() error
	undo func()
}

// confirmReq is a publish waiting to be confirmed, in publish order.
type confirmReq struct {
	seq uint64
	end int64 // the log offset its record ends at; 0: nothing to wait for
	err error
}

// channel is one AMQP channel. The connection's reader calls its methods;
// queue dispatchers call deliver and room, and its confirmer sends
// basic.ack and basic.nack to a publisher.
type channel struct {
	c  *conn
	id uint16

	// The reader's alone.
	pending  *publishing
	closing  bool // channel.close sent: wait for close-ok
	tx       bool
	txOps    []txOp
	txBytes  int
	confirms chan confirmReq // nil until confirm.select

	sendMu sync.Mutex // delivery tags go out in the order they are given

	mu         sync.Mutex
	closed     bool
	confirm    bool
	pubSeq     uint64
	nextTag    uint64
	unacked    unackedList
	consumers  map[string]*consumer
	prefetch   int // for the channel's next consumers (basic.qos, global false)
	global     int // for the whole channel (basic.qos, global true)
	flowPaused bool
	confirmWG  sync.WaitGroup
}

func newChannel(c *conn, id uint16) *channel {
	return &channel{c: c, id: id, consumers: map[string]*consumer{}}
}

// maxBatch is the most deliveries a dispatcher sends a consumer at once.
const maxBatch = 64

// room is how many more deliveries consumer k may take: its prefetch, the
// channel's, and amqp.max-unacked bound it. Caller may hold k.q.mu.
func (ch *channel) room(k *consumer) int {
	if !k.ready.Load() {
		return 0
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.roomLocked(k)
}

// roomLocked is room; caller holds ch.mu.
func (ch *channel) roomLocked(k *consumer) int {
	if ch.closed || ch.flowPaused || k.cancelled {
		return 0
	}
	if k.noAck {
		return maxBatch
	}
	n := min(maxBatch, ch.c.s.cfg.MaxUnacked-ch.unacked.len())
	if k.prefetch > 0 {
		n = min(n, k.prefetch-k.unacked)
	}
	if ch.global > 0 {
		n = min(n, ch.global-ch.unacked.len())
	}
	return max(n, 0)
}

// frame handles a frame of the channel.
func (ch *channel) frame(f frame) error {
	if ch.closing {
		// [spec §4.2.9... channel.close] after close, only close-ok (or the
		// peer's own close) counts; the rest is discarded.
		if f.typ == frameMethod {
			if m, err := decodeMethod(f.payload); err == nil {
				switch m.id {
				case mChanCloseOk:
					ch.c.dropChannel(ch.id)
				case mChanClose:
					ch.c.sendMethod(ch.id, mChanCloseOk)
				}
			}
		}
		return nil
	}
	var err error
	switch f.typ {
	case frameMethod:
		if ch.pending != nil {
			return connErr(codeUnexpectedFrame, fmt.Sprintf("method frame on channel %d while expecting content of basic.publish", ch.id))
		}
		var m method
		if m, err = decodeMethod(f.payload); err != nil {
			return err
		}
		err = ch.method(m)
	case frameHeader:
		err = ch.header(f.payload)
	case frameBody:
		err = ch.body(f.payload)
	}
	var ae *Error
	if errors.As(err, &ae) && !ae.Conn {
		ch.fail(ae)
		return nil
	}
	return err
}

// fail closes the channel with a channel error [spec §1.2].
func (ch *channel) fail(e *Error) {
	ch.c.s.metrics.errors.WithLabelValues(replyText[e.Code]).Inc()
	ch.c.log.Info("amqp: channel error", "user", ch.c.user, "channel", ch.id, "code", e.Code, "text", e.Text)
	ch.closing = true
	ch.pending = nil
	ch.shutdown()
	ch.c.sendMethod(ch.id, mChanClose, e.Code, e.replyTextOf(), e.Method.class(), e.Method.method())
}

// shutdown releases the channel: unacknowledged deliveries go back to
// their queues (redelivered), consumers leave them, confirms are flushed.
func (ch *channel) shutdown() {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		return
	}
	ch.closed = true
	back := ch.unacked.takeAll()
	cs := make([]*consumer, 0, len(ch.consumers))
	for _, k := range ch.consumers {
		k.cancelled = true
		cs = append(cs, k)
	}
	ch.consumers = map[string]*consumer{}
	confirms := ch.confirms
	ch.confirms = nil
	ch.mu.Unlock()
	if confirms != nil {
		close(confirms)
		ch.confirmWG.Wait()
	}
	requeue(back)
	for _, k := range cs {
		k.q.removeConsumer(k)
	}
}

// requeue gives deliveries back to their queues, in order.
func requeue(us []*unacked) {
	byQueue := map[*queue][]held{}
	var order []*queue
	for _, u := range us {
		if _, ok := byQueue[u.q]; !ok {
			order = append(order, u.q)
		}
		byQueue[u.q] = append(byQueue[u.q], u.h)
	}
	for _, q := range order {
		q.requeue(byQueue[q]...)
	}
}

// cancelledByServer ends consumer k whose queue was deleted, telling the
// client when it can hear it [RabbitMQ consumer_cancel_notify].
func (ch *channel) cancelledByServer(k *consumer) {
	ch.mu.Lock()
	if ch.consumers[k.tag] != k {
		ch.mu.Unlock()
		return
	}
	delete(ch.consumers, k.tag)
	k.cancelled = true
	closed := ch.closed
	ch.mu.Unlock()
	if !closed && ch.c.capability("consumer_cancel_notify") {
		ch.c.sendMethod(ch.id, mBasicCancel, k.tag, true)
	}
}

// method handles a method of the channel.
func (ch *channel) method(m method) error {
	v := ch.c.s.vhost
	switch m.id {
	case mChanClose:
		ch.shutdown()
		ch.c.dropChannel(ch.id)
		ch.c.sendMethod(ch.id, mChanCloseOk)
		return nil
	case mChanCloseOk:
		return nil
	case mChanFlow:
		ch.mu.Lock()
		ch.flowPaused = !m.bit(0)
		cs := make([]*consumer, 0, len(ch.consumers))
		for _, k := range ch.consumers {
			cs = append(cs, k)
		}
		ch.mu.Unlock()
		ch.c.sendMethod(ch.id, mChanFlowOk, m.bit(0))
		for _, k := range cs {
			k.q.signal()
		}
		return nil
	case mChanOpen:
		return connErr(codeChannelError, fmt.Sprintf("channel %d is already open", ch.id)).on(m.id)

	case mExDeclare:
		name, typ := m.str(1), m.str(2)
		if err := checkName("exchange", name); err != nil {
			return err.on(m.id)
		}
		if err := v.declareExchange(name, typ, m.bit(3), m.bit(4), m.bit(5), m.bit(6)); err != nil {
			return on(err, m.id)
		}
		if !m.bit(7) {
			ch.c.sendMethod(ch.id, mExDeclareOk)
		}
		return nil
	case mExDelete:
		if err := v.deleteExchange(m.str(1), m.bit(2)); err != nil {
			return on(err, m.id)
		}
		if !m.bit(3) {
			ch.c.sendMethod(ch.id, mExDeleteOk)
		}
		return nil
	case mExBind, mExUnbind:
		return connErr(codeNotImplemented, "exchange-to-exchange bindings are not supported; bind queues to exchanges").on(m.id)

	case mQDeclare:
		name := m.str(1)
		if err := checkName("queue", name); err != nil {
			return err.on(m.id)
		}
		q, err := v.declareQueue(ch.c, name, m.bit(2), m.bit(3), m.bit(4), m.bit(5), m.table(7))
		if err != nil {
			return on(err, m.id)
		}
		if !m.bit(6) {
			ch.c.sendMethod(ch.id, mQDeclareOk, q.name, q.messageCount(), q.consumerCount())
		}
		return nil
	case mQBind, mQUnbind:
		q, err := ch.queueOf(m)
		if err != nil {
			return err
		}
		if m.id == mQBind {
			if err := ch.allowBind(m.str(2), m.str(3)); err != nil {
				return err.on(m.id)
			}
			if err := v.bind(q, m.str(2), m.str(3), m.table(5)); err != nil {
				return on(err, m.id)
			}
			if !m.bit(4) {
				ch.c.sendMethod(ch.id, mQBindOk)
			}
			return nil
		}
		if err := q.unbind(m.str(2), m.str(3)); err != nil {
			return on(err, m.id)
		}
		ch.c.sendMethod(ch.id, mQUnbindOk)
		return nil
	case mQPurge:
		q, err := ch.queueOf(m)
		if err != nil {
			return err
		}
		n := q.messageCount()
		if err := q.purge(); err != nil {
			return on(err, m.id)
		}
		if !m.bit(2) {
			ch.c.sendMethod(ch.id, mQPurgeOk, n)
		}
		return nil
	case mQDelete:
		q, err := ch.queueOf(m)
		var ae *Error
		if errors.As(err, &ae) && ae.Code == codeNotFound {
			if !m.bit(4) {
				ch.c.sendMethod(ch.id, mQDeleteOk, uint32(0)) // RabbitMQ: deleting a missing queue succeeds
			}
			return nil
		}
		if err != nil {
			return err
		}
		n, err := v.deleteQueue(q, m.bit(2), m.bit(3))
		if err != nil {
			return on(err, m.id)
		}
		if !m.bit(4) {
			ch.c.sendMethod(ch.id, mQDeleteOk, n)
		}
		return nil

	case mBasicQos:
		if m.u32(0) != 0 {
			return connErr(codeNotImplemented, "prefetch_size is not supported; set prefetch_count").on(m.id)
		}
		ch.mu.Lock()
		if m.bit(2) {
			ch.global = int(m.u16(1))
		} else {
			ch.prefetch = int(m.u16(1))
		}
		ch.mu.Unlock()
		ch.c.sendMethod(ch.id, mBasicQosOk)
		return nil
	case mBasicConsume:
		return ch.consume(m)
	case mBasicCancel:
		tag := m.str(0)
		ch.mu.Lock()
		k := ch.consumers[tag]
		delete(ch.consumers, tag)
		if k != nil {
			k.cancelled = true
		}
		ch.mu.Unlock()
		if !m.bit(1) {
			ch.c.sendMethod(ch.id, mBasicCancelOk, tag)
		}
		if k != nil {
			k.q.removeConsumer(k)
		}
		return nil
	case mBasicPublish:
		x, err := v.exchange(m.str(1))
		if err != nil {
			return on(err, m.id)
		}
		if m.bit(4) {
			return connErr(codeNotImplemented, "immediate=true is not supported (nor is it by RabbitMQ)").on(m.id)
		}
		if x.rec.Internal {
			return chanErr(codeAccessRefused, fmt.Sprintf("cannot publish to internal exchange '%s' in vhost '/'", x.name)).on(m.id)
		}
		ch.pending = &publishing{x: x, key: m.str(2), mandatory: m.bit(3)}
		return nil
	case mBasicGet:
		return ch.get(m)
	case mBasicAck:
		return ch.settle(m.id, m.u64(0), m.bit(1), ackAll)
	case mBasicReject, mBasicNack:
		requeueIt := m.bit(1)
		multiple := false
		if m.id == mBasicNack {
			multiple, requeueIt = m.bit(1), m.bit(2)
		}
		return ch.settle(m.id, m.u64(0), multiple, func(us []*unacked) {
			if requeueIt {
				requeue(us)
				return
			}
			for _, u := range us {
				u.q.discard(u.h.d, u.exchange, u.key, "rejected")
			}
		})
	case mBasicRecover, mBasicRecoverAsync:
		ch.mu.Lock()
		back := ch.unacked.takeAll()
		for _, u := range back {
			if u.c != nil {
				u.c.unacked--
			}
		}
		ch.mu.Unlock()
		requeue(back)
		if m.id == mBasicRecover {
			ch.c.sendMethod(ch.id, mBasicRecoverOk)
		}
		return nil

	case mConfirmSelect:
		if ch.tx {
			return chanErr(codePreconditionFail, "cannot switch from tx to confirm mode").on(m.id)
		}
		ch.mu.Lock()
		if !ch.confirm {
			ch.confirm = true
			ch.confirms = make(chan confirmReq, ch.c.s.cfg.MaxUnconfirmed)
			ch.confirmWG.Add(1)
			go ch.confirmer(ch.confirms)
		}
		ch.mu.Unlock()
		if !m.bit(0) {
			ch.c.sendMethod(ch.id, mConfirmSelectOk)
		}
		return nil
	case mTxSelect:
		ch.mu.Lock()
		confirm := ch.confirm
		ch.mu.Unlock()
		if confirm {
			return chanErr(codePreconditionFail, "cannot switch from confirm to tx mode").on(m.id)
		}
		ch.tx = true
		ch.c.sendMethod(ch.id, mTxSelectOk)
		return nil
	case mTxCommit, mTxRollback:
		if !ch.tx {
			return chanErr(codePreconditionFail, "channel is not transactional").on(m.id)
		}
		ops := ch.txOps
		ch.txOps, ch.txBytes = nil, 0
		if m.id == mTxCommit {
			for _, op := range ops {
				if err := op.run(); err != nil {
					return on(err, m.id)
				}
			}
			ch.c.sendMethod(ch.id, mTxCommitOk)
		} else {
			for _, op := range ops {
				if op.undo != nil {
					op.undo() // the deliveries an ack rolled back go back to their queues
				}
			}
			ch.c.sendMethod(ch.id, mTxRollbackOk)
		}
		return nil
	}
	return connErr(codeCommandInvalid, fmt.Sprintf("%v is not a method a client sends", m.id)).on(m.id)
}

// on sets the method of an AMQP error.
func on(err error, id methodID) error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.on(id)
	}
	return connErr(codeInternalError, err.Error()).on(id)
}

// checkName checks an exchange or queue name [spec: shortstr of
// letters, digits, '-', '_', '.', ':'; RabbitMQ takes any UTF-8].
func checkName(what, name string) *Error {
	if strings.ContainsRune(name, 0) {
		return chanErr(codePreconditionFail, fmt.Sprintf("%s name holds a NUL", what))
	}
	return nil
}

// queueOf is the queue method m names in its queue field (argument 1),
// checked for use by the channel's connection, or m's error. The spec's
// default queue ("" for the channel's last declared one) Ferry does not
// keep: "" names no queue.
func (ch *channel) queueOf(m method) (*queue, error) {
	q, err := ch.c.s.vhost.queue(m.str(1), ch.c)
	if err != nil {
		return nil, on(err, m.id)
	}
	return q, nil
}

// allowBind checks that the user may read what a binding reads.
func (ch *channel) allowBind(xname, key string) *Error {
	g := ch.c.s.cfg.Guard
	if g == nil {
		return nil
	}
	x, err := ch.c.s.vhost.exchange(xname)
	if err != nil {
		return nil // the bind reports it
	}
	filter := x.rec.Topic + "/#"
	if x.rec.Topic == "" {
		filter = mqttFilter(key)
	}
	if !g.AllowFilter(ch.c.user, ch.c.clientID, filter) {
		ch.c.s.metrics.refused.WithLabelValues("read").Inc()
		return chanErr(codeAccessRefused, fmt.Sprintf("read access to topic filter '%s' refused for user '%s'", filter, ch.c.user))
	}
	return nil
}

// mqttFilter is the MQTT-style filter of an amq.topic binding pattern, as
// the ACL reads it: `devices.*.telemetry` is `devices/+/telemetry`, and a
// `#` anywhere but at the end reads all.
func mqttFilter(pattern string) string {
	words := strings.Split(pattern, ".")
	for i, w := range words {
		switch {
		case w == "*":
			words[i] = "+"
		case w == "#" && i < len(words)-1:
			return "#"
		}
	}
	return strings.Join(words, "/")
}

// consume starts a consumer [spec basic.consume].
func (ch *channel) consume(m method) error {
	q, err := ch.queueOf(m)
	if err != nil {
		return err
	}
	if err := ch.allowQueue(q); err != nil {
		return err.on(m.id)
	}
	tag := m.str(2)
	ch.mu.Lock()
	if tag == "" {
		tag = fmt.Sprintf("amq.ctag-%d-%d", ch.id, len(ch.consumers)+int(ch.nextTag)+1)
		for ch.consumers[tag] != nil {
			tag += "-"
		}
	}
	if ch.consumers[tag] != nil {
		ch.mu.Unlock()
		return connErr(codeNotAllowed, fmt.Sprintf("attempt to reuse consumer tag '%s'", tag)).on(m.id)
	}
	k := &consumer{tag: tag, ch: ch, q: q, noAck: m.bit(4), prefetch: ch.prefetch}
	ch.consumers[tag] = k
	ch.mu.Unlock()
	if err := q.addConsumer(k, m.bit(5)); err != nil {
		ch.mu.Lock()
		delete(ch.consumers, tag)
		ch.mu.Unlock()
		return on(err, m.id)
	}
	if !m.bit(6) {
		ch.c.sendMethod(ch.id, mBasicConsumeOk, tag)
	}
	k.ready.Store(true) // deliveries only after consume-ok
	q.signal()
	return nil
}

// allowQueue checks that the user may consume from q: the queue's name is
// the group the ACL's group lines name.
func (ch *channel) allowQueue(q *queue) *Error {
	g := ch.c.s.cfg.Guard
	if g == nil || g.AllowGroup(ch.c.user, auth.GroupConsume, q.name) {
		return nil
	}
	ch.c.s.metrics.refused.WithLabelValues("group").Inc()
	return chanErr(codeAccessRefused, fmt.Sprintf("access to queue '%s' in vhost '/' refused for user '%s' (no group line for it in the ACL)", q.name, ch.c.user))
}

// get answers basic.get.
func (ch *channel) get(m method) error {
	q, err := ch.queueOf(m)
	if err != nil {
		return err
	}
	if err := ch.allowQueue(q); err != nil {
		return err.on(m.id)
	}
	noAck := m.bit(2)
	ch.mu.Lock()
	n := ch.unacked.len()
	ch.mu.Unlock()
	if !noAck && n >= ch.c.s.cfg.MaxUnacked {
		ch.c.s.metrics.limits.WithLabelValues("amqp.max-unacked").Inc()
		return chanErr(codePreconditionFail, fmt.Sprintf("channel has %d unacknowledged deliveries, the most it may hold (amqp.max-unacked): acknowledge some before basic.get", n)).on(m.id)
	}
	h, exchange, key, ok := q.get()
	if !ok {
		ch.c.sendMethod(ch.id, mBasicGetEmpty, "")
		return nil
	}
	ch.sendMu.Lock()
	defer ch.sendMu.Unlock()
	ch.mu.Lock()
	ch.nextTag++
	tag := ch.nextTag
	if !noAck {
		ch.unacked.push(&unacked{tag: tag, q: q, h: h, exchange: exchange, key: key})
	}
	ch.mu.Unlock()
	b := appendMethodFrame(ch.c.buffer(), ch.id, mBasicGetOk, tag, h.redelivered, exchange, key, q.messageCount())
	ch.c.send(appendContent(b, ch.id, h.d, ch.c.frameMax))
	ch.c.s.metrics.delivered.Inc()
	if noAck {
		q.ack(h.d)
	}
	return nil
}

// settle takes the deliveries an ack, nack or reject names off the
// channel and hands them to do; in a transaction, at commit.
func (ch *channel) settle(id methodID, tag uint64, multiple bool, do func([]*unacked)) error {
	ch.mu.Lock()
	var us []*unacked
	switch {
	case multiple:
		us = ch.unacked.takeThrough(tag)
	default:
		u := ch.unacked.take(tag)
		if u == nil {
			ch.mu.Unlock()
			// [spec basic.ack] an unknown tag is a channel error.
			return chanErr(codePreconditionFail, fmt.Sprintf("unknown delivery tag %d", tag)).on(id)
		}
		us = []*unacked{u}
	}
	for _, u := range us {
		if u.c != nil {
			u.c.unacked--
		}
	}
	ch.mu.Unlock()
	if ch.tx {
		ch.txOps = append(ch.txOps, txOp{run: func() error { do(us); return nil }, undo: func() { requeue(us) }})
		return nil
	}
	do(us)
	return nil
}
