package client

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ferrymq/ferry/remoting"
)

// maxAsyncInFlight bounds the SendAsync calls in flight: one more waits
// for a slot (or for its context to end).
const maxAsyncInFlight = 4096

// Producer sends messages. It is safe for concurrent use.
type Producer struct {
	opts   options
	logger *slog.Logger
	pool   *pool
	routes *routes
	ids    *idGen
	born   msClock       // the born timestamp field's text
	rr     atomic.Uint32 // round robin over the write queues
	async  chan struct{} // SendAsync slots
	// callbacks runs SendAsync's done functions, in order, on one
	// goroutine of the producer's; Close stops it after the sends.
	callbacks chan *asyncSend
	cbDone    chan struct{}

	mu        sync.RWMutex
	closed    bool
	sends     sync.WaitGroup // sends in flight, SendAsync's goroutines among them
	closeOnce sync.Once
	closeErr  error
}

// NewProducer makes a producer. It connects lazily, on the first send.
func NewProducer(opts ...Option) (*Producer, error) {
	return newProducer(buildOptions(opts), nil)
}

// newProducer makes a producer whose connections serve the requests
// brokers send with serve (nil: none).
func newProducer(o options, serve func(addr string, req *remoting.Command) *remoting.Command) (*Producer, error) {
	if err := o.check("producer"); err != nil {
		return nil, err
	}
	if o.group == "" {
		o.group = DefaultProducerGroup
	}
	pl := newPool(&o)
	pl.serve = serve
	p := &Producer{opts: o, logger: o.logger, pool: pl, routes: newRoutes(&o, pl, true), ids: newIDGen(),
		async: make(chan struct{}, maxAsyncInFlight), callbacks: make(chan *asyncSend, maxAsyncInFlight), cbDone: make(chan struct{})}
	p.routes.start()
	go func() {
		defer close(p.cbDone)
		for s := range p.callbacks {
			s.done(s.res, s.err)
			s.free()
			<-p.async // the slot is freed after done ran: at most maxAsyncInFlight callbacks ever wait
			p.sends.Done()
		}
	}()
	return p, nil
}

// enter counts a send in, unless the producer is closed.
func (p *Producer) enter() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	p.sends.Add(1)
	return nil
}

// Close waits for the sends in flight (each bounded by the send timeout),
// then closes the connections. Sends after Close fail with ErrClosed.
func (p *Producer) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.sends.Wait()
		close(p.callbacks)
		<-p.cbDone
		p.routes.close()
		p.closeErr = p.pool.close()
	})
	return p.closeErr
}

// Send sends m and returns once the broker stored it. A failure is retried
// (WithRetries) on another broker's queue when the topic has one; a
// message with a ShardingKey is retried on its own queue, so that its
// order holds. The whole send is bounded by WithSendTimeout.
func (p *Producer) Send(ctx context.Context, m *Message) (SendResult, error) {
	if err := p.enter(); err != nil {
		return SendResult{}, err
	}
	defer p.sends.Done()
	return p.send(ctx, m)
}

// SendAsync sends m in the background and calls done with the result,
// exactly once, on a goroutine of the producer's; done must not call
// Close. ctx bounds the send as it does Send's: it must not end before
// done is called; nor may m change before then. When the send cannot start (the producer is closed, or ctx ends
// while 1024 sends are in flight already), done is called before SendAsync
// returns. Close waits for the sends SendAsync started.
func (p *Producer) SendAsync(ctx context.Context, m *Message, done func(SendResult, error)) {
	if done == nil {
		done = func(SendResult, error) {}
	}
	if err := p.enter(); err != nil {
		done(SendResult{}, err)
		return
	}
	select { // a free slot: no select over two channels
	case p.async <- struct{}{}:
	default:
		select {
		case p.async <- struct{}{}:
		case <-ctx.Done():
			p.sends.Done()
			done(SendResult{}, ctx.Err())
			return
		}
	}
	s := asyncSends.Get().(*asyncSend)
	s.p, s.ctx, s.m, s.done = p, ctx, m, done
	if err := s.pipelined(); err != nil {
		go s.sync() // the pipelined attempt could not start: the sync path, with its retries
	}
}

// asyncSend is one SendAsync from its start to its callback, with the
// pipelined attempt's request, reused from one send to the next
// (asyncSends): a send allocates neither it nor its request nor the
// callback its connection calls.
type asyncSend struct {
	p    *Producer
	ctx  context.Context
	m    *Message
	done func(SendResult, error)
	q    messageQueue // the pipelined attempt's queue
	id   string       // the message's id, as the pipelined attempt sent it
	res  SendResult
	err  error

	// req is the pipelined attempt's request, in fields' memory: the
	// connection keeps neither once InvokeAsync returned (the header is
	// encoded by then; the body is the message's).
	req      remoting.Command
	fields   [sendFieldCount + remoting.SigningFields]remoting.Field
	answered func(*remoting.Command, error) // s.answer, made once
}

// asyncSends are the asyncSends of sends done, for the next ones.
var asyncSends = sync.Pool{New: func() any {
	s := new(asyncSend)
	s.answered = s.answer
	return s
}}

// free gives s back to asyncSends once its callback ran: nothing refers
// to it any more. It lets go of the message and the callback; the header
// fields, a few short strings, are overwritten by the next send.
func (s *asyncSend) free() {
	s.p, s.ctx, s.m, s.done, s.id, s.res, s.err = nil, nil, nil, nil, "", SendResult{}, nil
	s.req.Body = nil
	asyncSends.Put(s)
}

// finish hands the result to the producer's callback goroutine.
func (s *asyncSend) finish(res SendResult, err error) {
	s.res, s.err = res, err
	s.p.callbacks <- s
}

// sync is the send by the sync path, with its retries.
func (s *asyncSend) sync() { s.finish(s.p.send(s.ctx, s.m)) }

// pipelined makes the first attempt of an async send without a
// goroutine: the request goes out and the connection's reader hands the
// answer to answered. An error means the attempt did not start.
func (s *asyncSend) pipelined() error {
	p, m := s.p, s.m
	if err := m.validate(); err != nil {
		s.finish(SendResult{}, err)
		return nil
	}
	rt, err := p.routes.get(s.ctx, m.Topic)
	if err != nil {
		return err
	}
	q, err := pickQueue(rt.write, m.ShardingKey, &p.rr, "")
	if err != nil {
		return err
	}
	c, err := p.pool.get(s.ctx, rt.addrs[q.Broker])
	if err != nil {
		return err
	}
	props, id := m.encodeWireProperties(p.ids.nextID())
	s.q, s.id = q, id
	s.req = remoting.Request(remoting.SendMessageV2, p.sendFields(s.fields[:0], m.Topic, q.ID, 0, props, false), m.Body)
	s.req.Serialization = remoting.RocketMQ
	p.pool.sign(rt.addrs[q.Broker], &s.req)
	return c.InvokeAsync(&s.req, p.opts.sendTimeout, s.answered)
}

// answer takes the pipelined attempt's answer. A failed attempt that
// may succeed elsewhere goes on with the sync path's retries.
func (s *asyncSend) answer(resp *remoting.Command, err error) {
	p, m, q := s.p, s.m, s.q
	if err == nil {
		err = remoting.ResponseError(resp)
	}
	if err == nil {
		s.finish(sendResult(resp, m.Topic, q, s.id, m.delayed()))
		return
	}
	if !retryable(err) || p.opts.retries == 0 {
		s.finish(SendResult{}, fmt.Errorf("client: send to %q (broker %s, queue %d): %w", m.Topic, q.Broker, q.ID, err))
		return
	}
	p.routes.markStale(m.Topic)
	if connFailure(err) {
		p.routes.brokerFailed(m.Topic)
	}
	go s.sync()
}

// SendOneway sends m without waiting for the broker: it returns once the
// request is written, and is never retried. ctx bounds the route lookup
// and the connection.
func (p *Producer) SendOneway(ctx context.Context, m *Message) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.sends.Done()
	if err := m.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.sendTimeout)
	defer cancel()
	rt, err := p.routes.get(ctx, m.Topic)
	if err != nil {
		return fmt.Errorf("client: send to %q: %w", m.Topic, err)
	}
	q, err := pickQueue(rt.write, m.ShardingKey, &p.rr, "")
	if err != nil {
		return err
	}
	props, _ := m.encodeWireProperties(p.ids.nextID())
	req := p.request(remoting.SendMessageV2, m.Topic, q.ID, props, false, m.Body)
	if err := p.pool.oneway(ctx, rt.addrs[q.Broker], req); err != nil {
		return fmt.Errorf("client: send to %q: %w", m.Topic, err)
	}
	return nil
}

// SendBatch sends msgs, which all go to one topic and are stored together
// in one queue, with SEND_BATCH_MESSAGE. The queue is picked by the
// messages' ShardingKey when they have one (it must be the same for all),
// else round robin. Delayed messages cannot be batched. MsgID and
// OffsetMsgID of the result list the messages' ids in order, joined by ",".
func (p *Producer) SendBatch(ctx context.Context, msgs []*Message) (SendResult, error) {
	if err := p.enter(); err != nil {
		return SendResult{}, err
	}
	defer p.sends.Done()
	if len(msgs) == 0 {
		return SendResult{}, fmt.Errorf("%w: empty batch", ErrInvalidMessage)
	}
	first := msgs[0]
	var body []byte
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		if err := m.validate(); err != nil {
			return SendResult{}, fmt.Errorf("batch message %d: %w", i, err)
		}
		if m.Topic != first.Topic || m.ShardingKey != first.ShardingKey {
			return SendResult{}, fmt.Errorf("%w: a batch goes to one topic and one queue: message %d has topic %q and sharding key %q, message 0 %q and %q",
				ErrInvalidMessage, i, m.Topic, m.ShardingKey, first.Topic, first.ShardingKey)
		}
		if m.DelayLevel != 0 || !m.DeliverAt.IsZero() {
			return SendResult{}, fmt.Errorf("%w: batch message %d is delayed: delayed messages cannot be batched", ErrInvalidMessage, i)
		}
		props, id := m.encodeWireProperties(p.ids.nextID())
		ids[i] = id
		if len(props) > maxPropsLen {
			return SendResult{}, fmt.Errorf("%w: batch message %d: properties of %d bytes, at most %d", ErrInvalidMessage, i, len(props), maxPropsLen)
		}
		body = appendBatchMessage(body, m.Body, props)
	}
	return p.sendWith(ctx, first.Topic, first.ShardingKey, strings.Join(ids, ","), false, func(q messageQueue) *remoting.Command {
		return p.request(remoting.SendBatchMessage, first.Topic, q.ID, "", true, body)
	})
}

func (p *Producer) send(ctx context.Context, m *Message) (SendResult, error) {
	if err := m.validate(); err != nil {
		return SendResult{}, err
	}
	props, id := m.encodeWireProperties(p.ids.nextID())
	return p.sendWith(ctx, m.Topic, m.ShardingKey, id, m.delayed(), func(q messageQueue) *remoting.Command {
		return p.request(remoting.SendMessageV2, m.Topic, q.ID, props, false, m.Body)
	})
}

// request builds SEND_MESSAGE_V2's (or SEND_BATCH_MESSAGE's) request with
// RocketMQ's one-letter header fields.
func (p *Producer) request(code int16, topic string, queue int, props string, batch bool, body []byte) *remoting.Command {
	return p.requestFlag(code, topic, queue, 0, props, batch, body)
}

// requestFlag is request with the message's sysFlag (a transaction's
// half message sets one).
func (p *Producer) requestFlag(code int16, topic string, queue, sysFlag int, props string, batch bool, body []byte) *remoting.Command {
	var fields [sendFieldCount]remoting.Field // copied into the request: the list stays on the stack
	return remoting.NewRequest(code, p.sendFields(fields[:0], topic, queue, sysFlag, props, batch), body)
}

// sendFieldCount is how many header fields sendFields appends.
const sendFieldCount = 12

// sendFields appends the header fields of SEND_MESSAGE_V2 (or
// SEND_BATCH_MESSAGE) to dst.
func (p *Producer) sendFields(dst []remoting.Field, topic string, queue, sysFlag int, props string, batch bool) []remoting.Field {
	return append(dst, []remoting.Field{
		{Name: "a", Value: p.opts.group},                     // producer group
		{Name: "b", Value: topic},                            // topic
		{Name: "c", Value: defaultTopic},                     // the topic whose config a new topic takes
		{Name: "d", Value: strconv.Itoa(defaultTopicQueues)}, // queues of a topic created on the fly
		{Name: "e", Value: strconv.Itoa(queue)},              // queue id
		{Name: "f", Value: strconv.Itoa(sysFlag)},            // sysFlag (0: not compressed)
		{Name: "g", Value: p.born.now()},                     // born timestamp
		{Name: "h", Value: "0"},                              // flag
		{Name: "i", Value: props},                            // properties
		{Name: "j", Value: "0"},                              // reconsume times
		{Name: "k", Value: "false"},                          // unit mode
		{Name: "m", Value: strconv.FormatBool(batch)},        // batch
	}...)
}

// sendWith sends a request made for a queue, retrying on another broker's
// queue (or, with a sharding key, on the key's queue again after a route
// refresh).
func (p *Producer) sendWith(ctx context.Context, topic, key, ids string, delayed bool, req func(messageQueue) *remoting.Command) (SendResult, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.sendTimeout)
	defer cancel()
	rt, err := p.routes.get(ctx, topic)
	if err != nil {
		return SendResult{}, fmt.Errorf("client: send to %q: %w", topic, err)
	}
	var lastErr error
	var avoid string // the broker of the last failure
	for attempt := 0; attempt <= p.opts.retries; attempt++ {
		if attempt > 0 {
			if r, err := p.routes.get(ctx, topic); err == nil {
				rt = r // refreshed: the failure marked it stale
			}
		}
		q, err := pickQueue(rt.write, key, &p.rr, avoid)
		if err != nil {
			return SendResult{}, err
		}
		addr := rt.addrs[q.Broker]
		resp, err := p.pool.call(ctx, addr, req(q))
		if err == nil {
			return sendResult(resp, topic, q, ids, delayed)
		}
		lastErr = fmt.Errorf("client: send to %q (broker %s, queue %d): %w", topic, q.Broker, q.ID, err)
		avoid = q.Broker
		if connFailure(err) {
			p.routes.brokerFailed(topic) // and asks them often until the broker is back
		} else if retryable(err) {
			p.routes.markStale(topic) // the next attempt, or the next send, asks the NameServers
		}
		if !retryable(err) || ctx.Err() != nil || errors.Is(err, ErrClosed) {
			break
		}
		if attempt < p.opts.retries {
			p.logger.Debug("client: send failed; retrying", "topic", topic, "broker", q.Broker, "queue", q.ID, "attempt", attempt+1, "err", err)
		}
	}
	if ctx.Err() != nil && !errors.Is(lastErr, ctx.Err()) {
		lastErr = fmt.Errorf("%w (%w)", lastErr, ctx.Err())
	}
	return SendResult{}, lastErr
}

func sendResult(resp *remoting.Command, topic string, q messageQueue, ids string, delayed bool) (SendResult, error) {
	res := SendResult{MsgID: ids, OffsetMsgID: resp.Ext("msgId"), Topic: topic, Broker: q.Broker, QueueID: q.ID, QueueOffset: -1}
	if delayed {
		return res, nil // the broker answers with its scheduled copy's position
	}
	if v, err := resp.ExtInt("queueId"); err == nil {
		res.QueueID = int(v)
	}
	if v, err := resp.ExtInt("queueOffset"); err == nil {
		res.QueueOffset = v
	}
	return res, nil
}

// pickQueue picks a write queue: by the FNV-1a hash of key over the sorted
// queues when key is set, else the next in round robin that is not on
// broker avoid (when the topic has queues elsewhere).
func pickQueue(queues []messageQueue, key string, rr *atomic.Uint32, avoid string) (messageQueue, error) {
	if len(queues) == 0 {
		return messageQueue{}, fmt.Errorf("%w: no writable queue", ErrNoRoute)
	}
	n := uint32(len(queues))
	if key != "" {
		h := fnv.New32a()
		h.Write([]byte(key))
		return queues[h.Sum32()%n], nil
	}
	start := rr.Add(1)
	for i := range n {
		if q := queues[(start+i)%n]; q.Broker != avoid {
			return q, nil
		}
	}
	return queues[start%n], nil
}
