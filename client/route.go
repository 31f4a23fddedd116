package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// defaultTopic is RocketMQ's TBW102: a producer sends to a topic no
// NameServer knows yet through the brokers that serve TBW102, which create
// the topic on its first message.
const (
	defaultTopic       = "TBW102"
	defaultTopicQueues = 4 // RocketMQ's defaultTopicQueueNums
)

// messageQueue is one queue of a topic on one broker (by name).
type messageQueue struct {
	Broker string
	ID     int
}

func compareQueues(a, b messageQueue) int {
	return cmp.Or(cmp.Compare(a.Broker, b.Broker), cmp.Compare(a.ID, b.ID))
}

// topicRoute is a topic's route, ready to use. It is immutable once made.
type topicRoute struct {
	topic string
	write []messageQueue    // sorted by broker name, queue id
	read  []messageQueue    // sorted by broker name, queue id
	addrs map[string]string // broker name → master address (id 0)
	// replicas: broker name → its replicas' addresses (ids > 0, in id
	// order), which serve reads (pulls, offsets) but never sends.
	replicas map[string][]string
	all      []string           // every broker address, sorted
	via      string             // the topic whose route this is (TBW102 for a topic not known yet)
	data     remoting.RouteData // as the NameServer answered
}

// newTopicRoute builds a route from the NameServer's answer. maxQueues,
// when above 0, caps the write queues per broker (TBW102's route).
func newTopicRoute(topic, via string, rd remoting.RouteData, maxQueues int) *topicRoute {
	r := &topicRoute{topic: topic, via: via, addrs: map[string]string{}, replicas: map[string][]string{}, data: rd}
	seen := map[string]bool{}
	for _, bd := range rd.BrokerDatas {
		if addr, ok := bd.BrokerAddrs[0]; ok && addr != "" {
			r.addrs[bd.BrokerName] = addr
		}
		ids := slices.Sorted(maps.Keys(bd.BrokerAddrs))
		for _, id := range ids {
			if a := bd.BrokerAddrs[id]; id > 0 && a != "" {
				r.replicas[bd.BrokerName] = append(r.replicas[bd.BrokerName], a)
			}
		}
		for _, a := range bd.BrokerAddrs {
			if a != "" && !seen[a] {
				seen[a] = true
				r.all = append(r.all, a)
			}
		}
	}
	slices.Sort(r.all)
	for _, qd := range rd.QueueDatas {
		_, master := r.addrs[qd.BrokerName]
		if !master && len(r.replicas[qd.BrokerName]) == 0 {
			continue // nothing to send to or pull from
		}
		nw := qd.WriteQueueNums
		if maxQueues > 0 {
			nw = min(nw, maxQueues)
		}
		if qd.Perm&remoting.PermWrite != 0 && master { // sends never go to a replica
			for i := range nw {
				r.write = append(r.write, messageQueue{qd.BrokerName, i})
			}
		}
		if qd.Perm&remoting.PermRead != 0 {
			for i := range qd.ReadQueueNums {
				r.read = append(r.read, messageQueue{qd.BrokerName, i})
			}
		}
	}
	slices.SortFunc(r.write, compareQueues)
	slices.SortFunc(r.read, compareQueues)
	return r
}

// A route that lost a broker is asked for again every lostPollEvery (or
// the refresh interval, when shorter) for lostPollFor after the loss was
// seen, or until the broker is back, rather than every refresh interval
// (30 s): a broker that restarts is used again within seconds. A send or
// a pull that fails to reach a broker starts the same watch, for the
// NameServers may not have dropped it yet.
const (
	lostPollEvery = 500 * time.Millisecond
	lostPollFor   = time.Minute
)

// lostWatch is the state of a topic whose route is asked for often.
type lostWatch struct {
	until   time.Time       // back to the normal interval then
	polled  time.Time       // last asked for by the watch
	lost    map[string]bool // brokers (by name) the route lost and has not got back
	hadLost bool            // some broker was lost: the watch ends once all are back
}

// routes caches topic routes, refreshes them in the background and on
// demand. Its goroutine is started by start and stopped by close.
type routes struct {
	nameServers []string
	pool        *pool
	logger      *slog.Logger
	timeout     time.Duration
	interval    time.Duration
	// viaDefault: a topic no NameServer knows is routed through TBW102's
	// brokers (producers).
	viaDefault bool

	// fastEvery is how often a route that lost a broker is asked for.
	fastEvery time.Duration
	// onBrokers, when set before start, is called (outside the lock; it
	// must not block) when a cached route's set of brokers changes: a
	// consumer rebalances then.
	onBrokers func(topic string)
	kick      chan struct{} // a watch started: the loop recomputes its wait; capacity 1

	mu      sync.Mutex
	byTopic map[string]*topicRoute
	stale   map[string]bool       // routes to ask the NameServers for again at the next get
	watches map[string]*lostWatch // routes asked for often
	next    int                   // the NameServer to ask first: the last that answered
	down    map[string]time.Time  // addresses a read could not reach, until when (readfrom.go)

	ctx    context.Context // ends at close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newRoutes(o *options, p *pool, viaDefault bool) *routes {
	ctx, cancel := context.WithCancel(context.Background())
	return &routes{nameServers: o.nameServers, pool: p, logger: o.logger, timeout: o.requestTimeout,
		interval: o.routeRefresh, fastEvery: min(lostPollEvery, o.routeRefresh), viaDefault: viaDefault,
		kick: make(chan struct{}, 1), byTopic: map[string]*topicRoute{}, stale: map[string]bool{},
		watches: map[string]*lostWatch{}, ctx: ctx, cancel: cancel}
}

func (r *routes) start() {
	r.wg.Add(1)
	go r.loop()
}

func (r *routes) close() {
	r.cancel()
	r.wg.Wait()
}

// loop refreshes every cached route every interval, and the watched ones
// every fastEvery, until close.
func (r *routes) loop() {
	defer r.wg.Done()
	t := time.NewTimer(r.interval)
	defer t.Stop()
	lastFull := time.Now()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
		now := time.Now()
		full := now.Sub(lastFull) >= r.interval
		if full {
			lastFull = now
		}
		for _, topic := range r.due(now, full) {
			ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
			if _, err := r.refresh(ctx, topic); err != nil && r.ctx.Err() == nil {
				r.logger.Debug("client: route refresh failed; keeping the route known", "topic", topic, "err", err)
			}
			cancel()
		}
		t.Reset(r.wait(lastFull.Add(r.interval)))
	}
}

// due lists the topics to refresh now: all when full, else the watched
// ones not asked for within fastEvery. Watches past their time end.
func (r *routes) due(now time.Time, full bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var topics []string
	for topic, w := range r.watches {
		if now.After(w.until) {
			delete(r.watches, topic)
			r.logger.Debug("client: a broker of the topic is still gone; back to the normal route refresh", "topic", topic)
			continue
		}
		if full || now.Sub(w.polled) >= r.fastEvery {
			w.polled = now
			if !full {
				topics = append(topics, topic)
			}
		}
	}
	if full {
		for topic := range r.byTopic {
			topics = append(topics, topic)
		}
	}
	return topics
}

// wait is how long the loop sleeps: until next (the next full refresh),
// or the next watched route's turn if sooner.
func (r *routes) wait(next time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.watches {
		if at := w.polled.Add(r.fastEvery); at.Before(next) {
			next = at
		}
	}
	return max(time.Until(next), time.Millisecond)
}

// watchLocked starts (or prolongs) topic's watch for lostPollFor, with
// lost the brokers it lost, and wakes the loop. Caller holds mu.
func (r *routes) watchLocked(topic string, lost ...string) {
	w := r.watches[topic]
	if w == nil {
		w = &lostWatch{lost: map[string]bool{}}
		r.watches[topic] = w
		r.logger.Debug("client: polling the topic's route often until its brokers are back", "topic", topic, "lost", lost)
	}
	w.until = time.Now().Add(lostPollFor)
	for _, b := range lost {
		w.lost[b] = true
		w.hadLost = true
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// brokerFailed says a send or a pull of topic could not reach its broker:
// the next get asks the NameServers, and the route is asked for often for
// a while.
func (r *routes) brokerFailed(topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byTopic[topic] != nil {
		r.stale[topic] = true
		r.watchLocked(topic)
	}
}

// get returns topic's route: the cached one, unless it was marked stale,
// else from the NameServers (a stale route is still returned when they
// cannot be reached).
func (r *routes) get(ctx context.Context, topic string) (*topicRoute, error) {
	r.mu.Lock()
	rt, stale := r.byTopic[topic], r.stale[topic]
	r.mu.Unlock()
	if rt != nil && !stale {
		return rt, nil
	}
	fresh, err := r.refresh(ctx, topic)
	if err != nil && rt != nil && !errors.Is(err, ErrNoRoute) {
		return rt, nil
	}
	return fresh, err
}

// cached returns topic's route if it is cached.
func (r *routes) cached(topic string) *topicRoute {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byTopic[topic]
}

// markStale makes the next get of topic ask the NameServers (a send to it
// failed).
func (r *routes) markStale(topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byTopic[topic] != nil {
		r.stale[topic] = true
	}
}

// store caches rt. A route that lost brokers is watched until they are
// back; onBrokers hears of a change to the route's brokers.
func (r *routes) store(rt *topicRoute) {
	r.mu.Lock()
	old := r.byTopic[rt.topic]
	r.byTopic[rt.topic] = rt
	delete(r.stale, rt.topic)
	changed := false
	if old != nil && old.via == rt.via {
		var lost []string
		for name := range old.addrs {
			if rt.addrs[name] == "" {
				lost = append(lost, name)
			}
		}
		changed = len(lost) > 0 || len(old.addrs) != len(rt.addrs)
		if len(lost) > 0 {
			r.watchLocked(rt.topic, lost...)
		}
	}
	if w := r.watches[rt.topic]; w != nil {
		for name := range w.lost {
			if rt.addrs[name] != "" {
				delete(w.lost, name)
			}
		}
		if w.hadLost && len(w.lost) == 0 {
			delete(r.watches, rt.topic)
			r.logger.Debug("client: the topic's brokers are back; back to the normal route refresh", "topic", rt.topic)
		}
	}
	onBrokers := r.onBrokers
	r.mu.Unlock()
	if changed && onBrokers != nil {
		onBrokers(rt.topic)
	}
}

func (r *routes) forget(topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byTopic, topic)
	delete(r.stale, topic)
	delete(r.watches, topic)
}

// lostAll watches topic, whose cached route old is kept though no
// NameServer routes the topic any more: every broker of it is lost.
func (r *routes) lostAll(old *topicRoute) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byTopic[old.topic] != old {
		return
	}
	names := make([]string, 0, len(old.addrs))
	for name := range old.addrs {
		names = append(names, name)
	}
	if w := r.watches[old.topic]; w == nil || len(w.lost) < len(names) {
		r.watchLocked(old.topic, names...)
	}
}

// refresh asks the NameServers for topic's route and caches it.
//
// When no NameServer knows the topic: a producer's topic goes through
// TBW102's brokers, which create it (a route through TBW102 is dropped
// once no NameServer knows TBW102 either); a route known before stays,
// as RocketMQ's clients keep it (the NameServers may not have heard from
// the brokers yet). When no NameServer answers, the cache is left as it
// is and the error returned.
func (r *routes) refresh(ctx context.Context, topic string) (*topicRoute, error) {
	rd, err := r.fetch(ctx, topic)
	if err == nil {
		rt := newTopicRoute(topic, topic, rd, 0)
		if len(rt.addrs) == 0 && len(rt.replicas) == 0 {
			return nil, fmt.Errorf("%w %q: no broker in the route", ErrNoRoute, topic)
		}
		r.store(rt)
		return rt, nil
	}
	if !errors.Is(err, ErrNoRoute) {
		return nil, err
	}
	old := r.cached(topic)
	if r.viaDefault && (old == nil || old.via == defaultTopic) {
		drd, derr := r.fetch(ctx, defaultTopic)
		if derr != nil {
			if errors.Is(derr, ErrNoRoute) {
				r.forget(topic)
				return nil, err
			}
			return nil, derr
		}
		rt := newTopicRoute(topic, defaultTopic, drd, defaultTopicQueues)
		if len(rt.write) == 0 {
			r.forget(topic)
			return nil, err
		}
		r.store(rt)
		return rt, nil
	}
	if old != nil {
		r.lostAll(old)
		return old, nil
	}
	return nil, err
}

// fetch asks the NameServers in turn for topic's route. A NameServer that
// does not know the topic is not the last word: another one may.
func (r *routes) fetch(ctx context.Context, topic string) (remoting.RouteData, error) {
	r.mu.Lock()
	first := r.next
	r.mu.Unlock()
	var errs []error
	notFound := false
	for i := range r.nameServers {
		n := (first + i) % len(r.nameServers)
		addr := r.nameServers[n]
		resp, err := r.pool.call(ctx, addr, remoting.NewRequest(remoting.GetRouteInfoByTopic, remoting.Pairs("topic", topic), nil))
		if err == nil {
			var rd remoting.RouteData
			if err = json.Unmarshal(resp.Body, &rd); err == nil {
				r.mu.Lock()
				r.next = n
				r.mu.Unlock()
				return rd, nil
			}
			err = fmt.Errorf("client: route of %q from %s: %w", topic, addr, err)
		}
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return remoting.RouteData{}, err
		}
		if errors.Is(err, remoting.ErrTopicNotExist) {
			notFound = true
		}
		errs = append(errs, err)
	}
	if notFound {
		return remoting.RouteData{}, fmt.Errorf("%w %q: %w", ErrNoRoute, topic, errors.Join(errs...))
	}
	return remoting.RouteData{}, fmt.Errorf("%w: %w", ErrNoNameServer, errors.Join(errs...))
}
