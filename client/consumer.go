package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// retryPrefix names a group's retry topic: "%RETRY%" + group.
const retryPrefix = "%RETRY%"

const (
	// maxSpan pauses a queue's pulls while its oldest unfinished message
	// and its newest pulled one are this far apart (RocketMQ's
	// consumeConcurrentlyMaxSpan).
	maxSpan = 2000
	// spanPause is how long a paused queue waits before it looks again.
	spanPause = 50 * time.Millisecond
	// pullMargin is how much longer than its long poll a pull may take.
	pullMargin = 15 * time.Second
)

// PushConsumer is a member of a consumer group in clustering mode: the
// group's members share the queues of the topics they subscribe to, and
// each message is handed to one member's handler (WithBroadcasting: every
// member reads every queue; WithOrdered: each queue is locked and handled in
// order). See the package documentation for how queues are balanced, failed
// messages retried and offsets committed. Its methods are safe for
// concurrent use.
//
// Lock order: PushConsumer.mu is never held while waiting or calling out;
// processQueue.commitMu is held across a commit's request; offsetTracker.mu
// and the pools' and routes' locks are leaves.
type PushConsumer struct {
	group  string
	opts   options
	logger *slog.Logger
	id     string // client id: hostname@pid@random
	pool   *pool  // everything but pulls
	// pulls is a connection pool of its own: a broker serves a bounded
	// number of requests at once per connection, and long-polling pulls
	// must not hold back heartbeats, commits and send-backs.
	pulls  *pool
	routes *routes

	mu      sync.Mutex
	subs    []*subscription // fixed at Start; the retry topic's is last
	started bool
	closed  bool
	queues  map[queueKey]*processQueue // the queues owned; changed by the rebalance loop

	ctx            context.Context // ends at Close: loops and pulls stop
	cancel         context.CancelFunc
	handlerCtx     context.Context // handed to handlers; ends at Close
	cancelHandlers context.CancelFunc
	work           chan task     // pulled messages for the workers
	slots          chan struct{} // WithOrdered: one per handler running
	workStop       chan struct{} // closed at Close once every queue is drained
	loops          sync.WaitGroup
	// rebalanceNow asks the rebalance loop for a rebalance before its next
	// tick: a pull found its queue's broker gone from the route.
	rebalanceNow chan struct{}
	// rebalanceSoon asks the rebalance loop for a rebalance soon: a
	// broker said the group's members changed (NOTIFY_CONSUMER_IDS_CHANGED),
	// or a route's brokers changed (one restarted, say).
	rebalanceSoon chan struct{}
	workers       sync.WaitGroup
	closeOnce     sync.Once
	closeErr      error
	refused       error // the first heartbeat's refusal, for Start; written before the first rebalance ends

	// WithBroadcasting: the offsets, kept here rather than at the brokers.
	memMu      sync.Mutex
	memOffsets map[queueKey]int64
}

type subscription struct {
	topic    string
	expr     string
	exprType string                                   // exprTag or exprSQL92
	handler  func(context.Context, *MessageExt) error // nil for the retry topic
	retry    bool
}

type queueKey struct {
	topic string
	messageQueue
}

// processQueue is an owned queue: its pull goroutine, the messages it
// handed to the workers, its offsets.
type processQueue struct {
	key     queueKey
	sub     *subscription
	ctx     context.Context // ends when the queue is dropped or at Close
	cancel  context.CancelFunc
	pulling sync.WaitGroup // the pull goroutine
	// inflight counts messages handed to the workers and not finished
	// (handled, or skipped because the queue was dropped).
	inflight sync.WaitGroup
	offsets  offsetTracker

	commitMu   sync.Mutex // serializes commits: the broker sees them in order
	lastCommit int64      // under commitMu
	final      bool       // under commitMu: the last commit was made
}

type task struct {
	pq  *processQueue
	msg *MessageExt
}

// NewPushConsumer makes a consumer of group. Subscribe, then Start.
func NewPushConsumer(group string, opts ...Option) (*PushConsumer, error) {
	o := buildOptions(opts)
	if err := o.check("consumer"); err != nil {
		return nil, err
	}
	if o.ordered && o.broadcasting {
		return nil, fmt.Errorf("%w: WithOrdered and WithBroadcasting cannot be combined", ErrInvalidOption)
	}
	if err := validTopic(retryPrefix + group); err != nil || group == "" || strings.HasPrefix(group, "%") {
		return nil, fmt.Errorf("%w: consumer group %q: letters, digits, '_', '-', '|', at most %d characters",
			ErrInvalidOption, group, maxTopicLen-len(retryPrefix))
	}
	pl := newPool(&o)
	ctx, cancel := context.WithCancel(context.Background())
	hctx, hcancel := context.WithCancel(context.Background())
	id := clientID()
	c := &PushConsumer{group: group, opts: o, logger: o.logger.With("group", group, "client", id), id: id,
		pool: pl, pulls: newPool(&o), routes: newRoutes(&o, pl, false), queues: map[queueKey]*processQueue{},
		ctx: ctx, cancel: cancel, handlerCtx: hctx, cancelHandlers: hcancel,
		work: make(chan task, o.concurrency), slots: make(chan struct{}, o.concurrency), workStop: make(chan struct{}),
		memOffsets: map[queueKey]int64{}, rebalanceNow: make(chan struct{}, 1), rebalanceSoon: make(chan struct{}, 1)}
	c.pool.serve = c.serveRequest
	c.routes.onBrokers = func(string) { c.soon() }
	return c, nil
}

// rebalanceSettle is how long a consumer told that its group's members
// (or a route's brokers) changed waits for more news before it
// rebalances: every broker of the group's topics tells it, and a
// deployment starts members in bursts.
const rebalanceSettle = 100 * time.Millisecond

// serveRequest serves a request a broker sends on the consumer's
// connection; it runs on the connection's reader and must not block.
// NOTIFY_CONSUMER_IDS_CHANGED for the group asks for a rebalance.
func (c *PushConsumer) serveRequest(addr string, req *remoting.Command) *remoting.Command {
	if req.Code == remoting.NotifyConsumerIdsChanged && req.Ext("consumerGroup") == c.group {
		c.logger.Debug("client: the group's members changed; rebalancing", "broker", addr)
		c.soon()
	}
	return nil
}

// soon asks for a rebalance within rebalanceSettle; it never blocks.
func (c *PushConsumer) soon() {
	select {
	case c.rebalanceSoon <- struct{}{}:
	default: // a rebalance is asked for already
	}
}

// clientID is RocketMQ's client id shape: host@pid@random.
func clientID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	var b [4]byte
	rand.Read(b[:])
	return host + "@" + strconv.Itoa(os.Getpid()) + "@" + hex.EncodeToString(b[:])
}

// ID is the consumer's client id in its group.
func (c *PushConsumer) ID() string { return c.id }

// Subscribe subscribes to topic's messages that match expr ("*" or "" for
// all, a tag list "a || b", or an MQTT-style wildcard on the tag such as
// "42/+"), handled by handler. handler is called on up to WithConcurrency
// goroutines at once; a nil error means done, an error or a panic sends the
// message back for a later retry (WithOrdered and WithBroadcasting retry it
// in place instead). Its ctx ends when the consumer is
// closing. Subscribe before Start; one subscription per topic. With SQL92,
// expr is a SQL92 selector on the messages' properties instead.
func (c *PushConsumer) Subscribe(topic, expr string, handler func(context.Context, *MessageExt) error, opts ...SubscribeOption) error {
	if err := validTopic(topic); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSubscription, err)
	}
	if strings.HasPrefix(topic, "%") {
		return fmt.Errorf("%w: topic %q: names starting with '%%' are reserved", ErrInvalidSubscription, topic)
	}
	if handler == nil {
		return fmt.Errorf("%w: nil handler for topic %q", ErrInvalidSubscription, topic)
	}
	sub := &subscription{topic: topic, expr: expr, exprType: exprTag, handler: handler}
	for _, o := range opts {
		o(sub)
	}
	switch {
	case sub.exprType == exprSQL92 && strings.TrimSpace(expr) == "":
		return fmt.Errorf("%w: topic %q: empty SQL92 expression", ErrInvalidSubscription, topic)
	case strings.TrimSpace(expr) == "":
		sub.expr = "*"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return ErrClosed
	case c.started:
		return ErrStarted
	}
	for _, s := range c.subs {
		if s.topic == topic {
			return fmt.Errorf("%w: topic %q is subscribed already", ErrInvalidSubscription, topic)
		}
	}
	c.subs = append(c.subs, sub)
	return nil
}

// Start joins the group and starts consuming. It returns once the consumer
// sent its first heartbeat and took its first queues, or when ctx ends
// first: ctx bounds only that wait. The consumer runs until Close, and
// keeps trying in the background what failed (a NameServer or broker that
// cannot be reached, a topic not created yet), logging why; but a broker
// that refuses its credentials (NO_PERMISSION at the first heartbeat) fails
// Start, and the consumer is closed.
func (c *PushConsumer) Start(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.started:
		c.mu.Unlock()
		return ErrStarted
	case len(c.subs) == 0:
		c.mu.Unlock()
		return ErrNoSubscription
	}
	c.started = true
	if !c.opts.broadcasting {
		c.subs = append(c.subs, &subscription{topic: retryPrefix + c.group, expr: "*", exprType: exprTag, retry: true})
	}
	c.routes.start()
	if !c.opts.ordered { // an ordered consumer's queues run their handlers themselves
		c.workers.Add(c.opts.concurrency)
		for range c.opts.concurrency {
			go c.worker()
		}
	}
	first := make(chan struct{})
	c.loops.Add(3)
	go c.rebalanceLoop(first)
	go c.every(c.opts.heartbeatEvery, func() { c.heartbeat() })
	go c.every(c.opts.commitEvery, c.commitAll)
	c.mu.Unlock()

	select {
	case <-first:
		if err := c.refused; err != nil {
			c.Close()
			if errors.Is(err, remoting.ErrSubscriptionInvalid) {
				return fmt.Errorf("%w: consumer of group %s: %w", ErrInvalidSubscription, c.group, err)
			}
			return fmt.Errorf("client: consumer of group %s refused: %w", c.group, err)
		}
	case <-ctx.Done():
		c.logger.Warn("client: consumer started before its first rebalance finished", "err", ctx.Err())
	}
	return nil
}

// Close stops consuming: it stops pulling, waits for the handlers running
// (their ctx ends), commits the offsets and leaves the group, so that the
// other members take its queues over at their next rebalance.
func (c *PushConsumer) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		started := c.started
		c.mu.Unlock()
		// Pulls stop at once; handlers are told to finish. Cancelling the
		// handlers now, not after the loops stopped, matters: the rebalance
		// loop may be waiting for the handlers of a queue it dropped.
		c.cancel()
		c.cancelHandlers()
		if started {
			c.loops.Wait()
			c.mu.Lock()
			qs := make([]*processQueue, 0, len(c.queues))
			for _, pq := range c.queues {
				qs = append(qs, pq)
			}
			clear(c.queues)
			c.mu.Unlock()
			for _, pq := range qs {
				pq.cancel()
				pq.pulling.Wait()
			}
			for _, pq := range qs {
				pq.inflight.Wait()
			}
			close(c.workStop)
			c.workers.Wait()
			for _, pq := range qs {
				c.commit(pq, true)
			}
			if c.opts.ordered {
				keys := make([]queueKey, len(qs))
				for i, pq := range qs {
					keys[i] = pq.key
				}
				c.unlock(keys)
			}
			c.unregister()
		}
		c.routes.close()
		c.closeErr = errors.Join(c.pool.close(), c.pulls.close())
	})
	return c.closeErr
}

func (c *PushConsumer) rebalanceLoop(first chan<- struct{}) {
	defer c.loops.Done()
	c.refused = c.heartbeat()
	c.rebalance()
	close(first)
	t := time.NewTicker(c.opts.rebalanceEvery)
	defer t.Stop()
	// An ordered consumer renews its locks here, not on a goroutine of its
	// own: a queue is then never dropped and taken back at once.
	var renew <-chan time.Time
	if c.opts.ordered {
		rt := time.NewTicker(c.opts.lockRenew)
		defer rt.Stop()
		renew = rt.C
	}
	var settle <-chan time.Time // armed by rebalanceSoon
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.rebalance()
		case <-c.rebalanceSoon:
			if settle == nil {
				settle = time.After(rebalanceSettle)
			}
		case <-settle:
			settle = nil
			c.rebalance()
		case <-c.rebalanceNow:
			for _, s := range c.subs { // a broker left: every topic it served, the retry topic too
				c.routes.markStale(s.topic)
			}
			c.rebalance()
		case <-renew:
			c.renewLocks()
		}
	}
}

// every calls f every d until the consumer stops. The caller counted it in
// c.loops.
func (c *PushConsumer) every(d time.Duration, f func()) {
	defer c.loops.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// commitAll commits the offsets of every owned queue.
func (c *PushConsumer) commitAll() {
	c.mu.Lock()
	qs := make([]*processQueue, 0, len(c.queues))
	for _, pq := range c.queues {
		qs = append(qs, pq)
	}
	c.mu.Unlock()
	for _, pq := range qs {
		c.commit(pq, false)
	}
}

// heartbeatData is RocketMQ's HeartbeatData, the parts Ferry's clients
// send: a consumer's data, or a transaction producer's group.
type heartbeatData struct {
	ClientID        string         `json:"clientID"`
	ConsumerDataSet []consumerData `json:"consumerDataSet"`
	ProducerDataSet []producerData `json:"producerDataSet"`
}

type producerData struct {
	GroupName string `json:"groupName"`
}

type consumerData struct {
	GroupName           string             `json:"groupName"`
	ConsumeType         string             `json:"consumeType"`
	MessageModel        string             `json:"messageModel"`
	ConsumeFromWhere    string             `json:"consumeFromWhere"`
	SubscriptionDataSet []subscriptionData `json:"subscriptionDataSet"`
	UnitMode            bool               `json:"unitMode"`
}

type subscriptionData struct {
	Topic          string `json:"topic"`
	SubString      string `json:"subString"`
	ExpressionType string `json:"expressionType"`
	SubVersion     int64  `json:"subVersion"`
}

// heartbeat tells every broker of the subscribed topics that this member
// is alive and what it reads. It returns the first refusal that trying
// again does not change: of the consumer's credentials (NO_PERMISSION), or
// of a subscription (SUBSCRIPTION_PARSE_FAILED: a bad SQL92 expression).
func (c *PushConsumer) heartbeat() error {
	model := "CLUSTERING"
	if c.opts.broadcasting {
		model = "BROADCASTING"
	}
	cd := consumerData{GroupName: c.group, ConsumeType: "CONSUME_PASSIVELY", MessageModel: model,
		ConsumeFromWhere: c.opts.consumeFrom.wire()}
	for _, s := range c.subs {
		cd.SubscriptionDataSet = append(cd.SubscriptionDataSet, subscriptionData{Topic: s.topic, SubString: s.expr, ExpressionType: s.exprType})
	}
	body, err := json.Marshal(heartbeatData{ClientID: c.id, ConsumerDataSet: []consumerData{cd}, ProducerDataSet: []producerData{}})
	if err != nil {
		c.logger.Error("client: heartbeat body", "err", err)
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.requestTimeout)
	defer cancel()
	var refused error
	for _, addr := range c.brokers(ctx, true) {
		if _, err := c.pool.call(ctx, addr, remoting.NewRequest(remoting.HeartBeat, nil, body)); err != nil && c.ctx.Err() == nil {
			c.logger.Warn("client: heartbeat failed", "broker", addr, "err", err)
			if connFailure(err) {
				c.brokerFailed(addr)
			}
			if refused == nil && (errors.Is(err, remoting.ErrNoPermission) || errors.Is(err, remoting.ErrSubscriptionInvalid)) {
				refused = err
			}
		}
	}
	return refused
}

// brokers lists the addresses of the brokers of the subscribed topics,
// looking routes up when lookup is set, else from the cache.
func (c *PushConsumer) brokers(ctx context.Context, lookup bool) []string {
	var addrs []string
	for _, s := range c.subs {
		var rt *topicRoute
		if lookup {
			rt, _ = c.routes.get(ctx, s.topic) // a topic without a route yet has no broker to tell
		} else {
			rt = c.routes.cached(s.topic)
		}
		if rt != nil {
			addrs = append(addrs, rt.all...)
		}
	}
	slices.Sort(addrs)
	return slices.Compact(addrs)
}

// brokerFailed watches the routes of the subscribed topics that addr
// serves: it could not be reached.
func (c *PushConsumer) brokerFailed(addr string) {
	for _, s := range c.subs {
		if rt := c.routes.cached(s.topic); rt != nil && slices.Contains(rt.all, addr) {
			c.routes.brokerFailed(s.topic)
		}
	}
}

// unregister tells the brokers this member leaves the group.
func (c *PushConsumer) unregister() {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.requestTimeout)
	defer cancel()
	for _, addr := range c.brokers(ctx, false) {
		req := remoting.NewRequest(remoting.UnregisterClient, remoting.Pairs(
			"clientID", c.id, "consumerGroup", c.group, "producerGroup", ""), nil)
		if _, err := c.pool.call(ctx, addr, req); err != nil {
			c.logger.Warn("client: leaving the group failed; the broker drops this member when its connection closes", "broker", addr, "err", err)
		}
	}
}

// rebalance takes this member's share of every subscribed topic's queues.
func (c *PushConsumer) rebalance() {
	for _, s := range c.subs {
		if c.ctx.Err() != nil {
			return
		}
		mine, ok := c.assignment(s)
		if ok {
			c.apply(s, mine)
		}
	}
}

// ownsAny reports whether this member pulls some queue of topic.
func (c *PushConsumer) ownsAny(topic string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.queues {
		if k.topic == topic {
			return true
		}
	}
	return false
}

// assignment computes this member's queues of s's topic; false when it
// cannot be known now (no route, no member list, this member not listed).
func (c *PushConsumer) assignment(s *subscription) ([]messageQueue, bool) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.requestTimeout)
	defer cancel()
	rt, err := c.routes.get(ctx, s.topic)
	if errors.Is(err, ErrNoRoute) && c.ownsAny(s.topic) {
		// No broker serves the topic any more: its queues go. (Before the
		// first heartbeat a retry topic has no route either; nothing is
		// owned then.)
		c.logger.Info("client: no broker serves the topic any more; dropping its queues", "topic", s.topic)
		return nil, true
	}
	if err != nil {
		if c.ctx.Err() == nil {
			level := slog.LevelWarn
			if s.retry && errors.Is(err, ErrNoRoute) {
				level = slog.LevelDebug // the broker registers it after the first heartbeat
			}
			c.logger.Log(ctx, level, "client: no route for a subscribed topic; retrying at the next rebalance", "topic", s.topic, "err", err)
		}
		return nil, false
	}
	if c.opts.broadcasting {
		return slices.Clone(rt.read), true
	}
	ids, err := c.consumerIDs(ctx, rt)
	if err != nil {
		if c.ctx.Err() == nil {
			c.logger.Warn("client: group member list unavailable; retrying at the next rebalance", "topic", s.topic, "err", err)
		}
		return nil, false
	}
	if !slices.Contains(ids, c.id) {
		// Not known to the broker (yet, or any more): taking nothing now
		// would only drop queues to take them back after the next heartbeat.
		c.logger.Debug("client: this member is not in the group's list yet; heartbeating", "topic", s.topic)
		c.heartbeat()
		return nil, false
	}
	return allocate(rt.read, ids, c.id), true
}

// consumerIDs asks a broker serving the topic for the group's members.
func (c *PushConsumer) consumerIDs(ctx context.Context, rt *topicRoute) ([]string, error) {
	var errs []error
	for _, n := range rt.readNames() {
		addr, err := c.routes.readAddr(rt, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resp, err := c.pool.call(ctx, addr, remoting.NewRequest(remoting.GetConsumerListByGroup, remoting.Pairs("consumerGroup", c.group), nil))
		if err == nil {
			var body struct {
				ConsumerIDList []string `json:"consumerIdList"`
			}
			if err = json.Unmarshal(resp.Body, &body); err == nil {
				return body.ConsumerIDList, nil
			}
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// apply makes the queues owned of s's topic those of mine: queues taken
// away stop (pull first, then their handlers) and commit; new ones start.
func (c *PushConsumer) apply(s *subscription, mine []messageQueue) {
	want := make(map[queueKey]bool, len(mine))
	for _, q := range mine {
		want[queueKey{s.topic, q}] = true
	}
	var dropped []*processQueue
	var added []queueKey
	c.mu.Lock()
	for k, pq := range c.queues {
		if k.topic == s.topic && !want[k] {
			dropped = append(dropped, pq)
			delete(c.queues, k)
		}
	}
	for k := range want {
		if c.queues[k] == nil {
			added = append(added, k)
		}
	}
	c.mu.Unlock()
	// Only this goroutine adds queues: those not owned above are not now.
	if c.opts.ordered && len(added) > 0 {
		locked, _ := c.lock(added)
		if n := len(added); len(locked) < n {
			added = slices.DeleteFunc(added, func(k queueKey) bool { return !locked[k] })
			c.logger.Debug("client: queues locked by another member; retrying at the next rebalance", "topic", s.topic, "not_locked", n-len(added))
		}
	}
	c.mu.Lock()
	for _, k := range added {
		pq := &processQueue{key: k, sub: s, lastCommit: -1}
		pq.ctx, pq.cancel = context.WithCancel(c.ctx)
		c.queues[k] = pq
		pq.pulling.Add(1)
		go c.pullLoop(pq)
	}
	c.mu.Unlock()
	if len(added)+len(dropped) > 0 {
		c.logger.Info("client: queues rebalanced", "topic", s.topic, "added", len(added), "dropped", len(dropped), "owned", len(mine))
	}
	c.stop(dropped, true)
}

// stop stops queues no longer owned: pulls first, then their handlers.
// When held, their offsets are committed and, ordered, their locks
// released (in that order: the next owner starts where this one stopped).
func (c *PushConsumer) stop(pqs []*processQueue, held bool) {
	for _, pq := range pqs {
		pq.cancel()
	}
	for _, pq := range pqs {
		pq.pulling.Wait()
		pq.inflight.Wait()
		if held {
			c.commit(pq, true)
		}
	}
	if held && c.opts.ordered && len(pqs) > 0 {
		keys := make([]queueKey, len(pqs))
		for i, pq := range pqs {
			keys[i] = pq.key
		}
		c.unlock(keys)
	}
}

// readAddr is where reads of k go: its broker's master, or a replica
// when the master is missing or unreachable (readfrom.go).
func (c *PushConsumer) readAddr(ctx context.Context, k queueKey) (string, error) {
	rt, err := c.routes.get(ctx, k.topic)
	if err != nil {
		return "", err
	}
	return c.routes.readAddr(rt, k.Broker)
}

// brokerAddr is the address of the master serving pq.
func (c *PushConsumer) brokerAddr(ctx context.Context, k queueKey) (string, error) {
	rt, err := c.routes.get(ctx, k.topic)
	if err != nil {
		return "", err
	}
	if addr := rt.addrs[k.Broker]; addr != "" {
		return addr, nil
	}
	return "", fmt.Errorf("%w: broker %s of topic %q has no master in the route", ErrNoRoute, k.Broker, k.topic)
}

// commit commits pq's offset if it moved. The final commit is the last.
func (c *PushConsumer) commit(pq *processQueue, final bool) {
	pq.commitMu.Lock()
	defer pq.commitMu.Unlock()
	if pq.final {
		return
	}
	pq.final = final
	off, ok := pq.offsets.committed()
	if !ok || off == pq.lastCommit {
		return
	}
	if c.opts.broadcasting {
		c.memMu.Lock()
		c.memOffsets[pq.key] = off
		c.memMu.Unlock()
		pq.lastCommit = off
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.requestTimeout)
	defer cancel()
	addr, err := c.readAddr(ctx, pq.key)
	if err == nil {
		_, err = c.pool.call(ctx, addr, commitRequest(c.group, pq.key.topic, pq.key.ID, off))
	}
	if err != nil {
		c.logger.Warn("client: offset commit failed", "topic", pq.key.topic, "broker", pq.key.Broker, "queue", pq.key.ID, "offset", off, "err", err)
		return
	}
	pq.lastCommit = off
}

// startOffset is where pq's pulls start: the group's committed offset, or
// per WithConsumeFrom when it has none. It retries until pq is dropped.
func (c *PushConsumer) startOffset(pq *processQueue) (int64, bool) {
	for {
		ctx, cancel := context.WithTimeout(pq.ctx, c.opts.requestTimeout)
		off, err := c.queryOffset(ctx, pq)
		cancel()
		if err == nil {
			return off, true
		}
		if pq.ctx.Err() != nil {
			return 0, false
		}
		c.logger.Warn("client: start offset unavailable; retrying", "topic", pq.key.topic, "broker", pq.key.Broker, "queue", pq.key.ID, "err", err)
		if !sleepCtx(pq.ctx, c.opts.retryBackoff) {
			return 0, false
		}
	}
}

func (c *PushConsumer) queryOffset(ctx context.Context, pq *processQueue) (int64, error) {
	addr, err := c.readAddr(ctx, pq.key)
	if err != nil {
		return 0, err
	}
	var resp *remoting.Command
	if c.opts.broadcasting {
		c.memMu.Lock()
		off, ok := c.memOffsets[pq.key]
		c.memMu.Unlock()
		if ok {
			return off, nil
		}
		err = remoting.ErrQueryNotFound
	} else {
		resp, err = c.pool.call(ctx, addr, offsetRequest(remoting.QueryConsumerOffset, c.group, pq.key.topic, pq.key.ID))
	}
	if errors.Is(err, remoting.ErrQueryNotFound) {
		code := remoting.GetMinOffset
		if c.opts.consumeFrom == ConsumeFromLast && !pq.sub.retry {
			code = remoting.GetMaxOffset
		}
		resp, err = c.pool.call(ctx, addr, offsetRequest(code, c.group, pq.key.topic, pq.key.ID))
	}
	if err != nil {
		return 0, err
	}
	off, err := resp.ExtInt("offset")
	if err != nil {
		return 0, fmt.Errorf("client: offset answer from %s: %w", addr, err)
	}
	return off, nil
}

// pullLoop long-polls pq's queue and hands what comes to the workers,
// until pq is dropped.
func (c *PushConsumer) pullLoop(pq *processQueue) {
	defer pq.pulling.Done()
	off, ok := c.startOffset(pq)
	if !ok {
		return
	}
	pq.offsets.start(off)
	k := pq.key
	log := c.logger.With("topic", k.topic, "broker", k.Broker, "queue", k.ID)
	backoff := func() bool { return sleepCtx(pq.ctx, c.opts.retryBackoff) }
	for pq.ctx.Err() == nil {
		if pq.offsets.span() > maxSpan {
			sleepCtx(pq.ctx, spanPause) // flow control: let the handlers catch up
			continue
		}
		commit, _ := pq.offsets.committed()
		ctx, cancel := context.WithTimeout(pq.ctx, c.opts.pollSuspend+pullMargin)
		addr, err := c.readAddr(ctx, k)
		var resp *remoting.Command
		if err == nil {
			resp, err = c.pulls.invoke(ctx, addr, pullRequest(c.group, k.topic, k.ID, off, c.opts.pullBatch, commit,
				c.opts.pollSuspend, pq.sub.expr, pq.sub.exprType))
		}
		cancel()
		if err != nil {
			if pq.ctx.Err() != nil {
				return
			}
			log.Warn("client: pull failed; retrying", "offset", off, "err", err)
			if addr != "" {
				c.routes.readFailed(addr, err) // its replicas take the next pulls
			}
			if connFailure(err) {
				c.routes.brokerFailed(k.topic)
			}
			rctx, rcancel := context.WithTimeout(pq.ctx, c.opts.requestTimeout)
			// The broker left the route, or the route is gone (the topic
			// was on that broker alone: a retry topic, say).
			if r, rerr := c.routes.refresh(rctx, k.topic); rerr == nil && !r.serves(k.Broker) || errors.Is(rerr, ErrNoRoute) {
				log.Warn("client: the queue's broker left the route; rebalancing")
				select { // its queues go to no one, the others' to the whole group
				case c.rebalanceNow <- struct{}{}:
				default:
				}
			}
			rcancel()
			if !backoff() {
				return
			}
			continue
		}
		next, nerr := resp.ExtInt("nextBeginOffset")
		switch resp.Code {
		case remoting.Success:
			msgs, err := decodeResponse(resp)
			if err == nil {
				err = nerr
			}
			if err != nil {
				log.Error("client: pull response undecodable; pulling again", "offset", off, "err", err)
				if !backoff() {
					return
				}
				continue
			}
			offs := make([]int64, len(msgs))
			for i, m := range msgs {
				m.Broker = k.Broker
				offs[i] = m.QueueOffset
			}
			pq.offsets.pulled(offs, next)
			off = next
			if c.opts.ordered {
				for _, m := range msgs {
					if !c.consumeOrderly(pq, m) {
						return
					}
				}
				continue
			}
			for _, m := range msgs {
				pq.inflight.Add(1)
				select { // a worker waits, or there is room: no select over two channels
				case c.work <- task{pq, m}:
					continue
				default:
				}
				select {
				case c.work <- task{pq, m}:
				case <-pq.ctx.Done():
					pq.inflight.Done()
					return
				}
			}
		case remoting.PullNotFound, remoting.PullRetryImmediately:
			if nerr == nil {
				pq.offsets.pulled(nil, next)
				off = next
			}
		case remoting.PullOffsetMoved:
			if nerr != nil {
				log.Error("client: offset moved without a new offset", "offset", off, "err", nerr)
				if !backoff() {
					return
				}
				continue
			}
			log.Warn("client: offset out of the queue's range; jumping", "offset", off, "next", next)
			pq.offsets.pulled(nil, next)
			off = next
		default:
			log.Warn("client: pull refused; retrying", "offset", off, "err", remoting.ResponseError(resp))
			if !backoff() {
				return
			}
		}
	}
}

func (c *PushConsumer) worker() {
	defer c.workers.Done()
	for {
		select { // a message waits: no select over two channels
		case t := <-c.work:
			c.consume(t)
			continue
		default:
		}
		select {
		case t := <-c.work:
			c.consume(t)
		case <-c.workStop:
			return
		}
	}
}

// consume runs the handler on one message until it is done: handled, or
// sent back to the broker for a later retry. A message whose queue went
// away is left not done: whoever owns the queue next gets it again.
func (c *PushConsumer) consume(t task) {
	pq, m := t.pq, t.msg
	defer pq.inflight.Done()
	off, logOffset, id, topic := m.QueueOffset, m.LogOffset, m.ID, m.Topic // the handler may change m
	handler := pq.sub.handler
	if pq.sub.retry {
		handler = c.handlerOf(topic)
	}
	for {
		if pq.ctx.Err() != nil {
			return
		}
		err := c.call(handler, m)
		if err == nil {
			pq.offsets.done(off)
			return
		}
		if pq.ctx.Err() != nil {
			return
		}
		log := c.logger.With("topic", topic, "id", id, "reconsume", m.ReconsumeTimes)
		if c.opts.broadcasting {
			log.Warn("client: message handler failed; retrying it here", "in", c.opts.retryBackoff, "err", err)
			if !sleepCtx(pq.ctx, c.opts.retryBackoff) {
				return
			}
			m.ReconsumeTimes++
			continue
		}
		log.Warn("client: message handler failed; sending the message back for a later retry", "err", err)
		err = c.sendBack(pq, logOffset, id, topic, 0)
		if err == nil {
			pq.offsets.done(off)
			return
		}
		log.Warn("client: sending a failed message back failed; retrying it here", "in", c.opts.retryBackoff, "err", err)
		if !sleepCtx(pq.ctx, c.opts.retryBackoff) {
			return
		}
		m.ReconsumeTimes++
	}
}

// handlerOf is the handler of a retried message's original topic.
func (c *PushConsumer) handlerOf(topic string) func(context.Context, *MessageExt) error {
	for _, s := range c.subs {
		if s.topic == topic && !s.retry {
			return s.handler
		}
	}
	return nil
}

// call runs handler, turning a panic into ErrHandlerPanic.
func (c *PushConsumer) call(handler func(context.Context, *MessageExt) error, m *MessageExt) (err error) {
	if handler == nil {
		return fmt.Errorf("client: no handler for topic %q", m.Topic)
	}
	defer func() {
		if r := recover(); r != nil {
			c.logger.Error("client: message handler panicked", "topic", m.Topic, "id", m.ID, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrHandlerPanic, r)
		}
	}()
	return handler(c.handlerCtx, m)
}

// sendBack hands a failed message back to its broker, which redelivers it
// through the group's retry topic later, or dead-letters it.
// A negative delayLevel dead-letters it at once.
func (c *PushConsumer) sendBack(pq *processQueue, logOffset int64, id, topic string, delayLevel int) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.requestTimeout)
	defer cancel()
	addr, err := c.brokerAddr(ctx, pq.key)
	if err != nil {
		return err
	}
	_, err = c.pool.call(ctx, addr, remoting.NewRequest(remoting.ConsumerSendMsgBack, remoting.Pairs(
		"offset", strconv.FormatInt(logOffset, 10), "group", c.group, "delayLevel", strconv.Itoa(delayLevel),
		"originMsgId", id, "originTopic", topic, "maxReconsumeTimes", strconv.Itoa(c.opts.maxRetries),
	), nil))
	return err
}

// sleepCtx waits d, false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
