package core

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/storage"
)

// Mode is how a consumer group shares messages among its members.
type Mode int

const (
	// Clustering gives each message to one member: queues are assigned
	// among the live members and reassigned when members come and go.
	Clustering Mode = iota
	// Broadcasting gives every member every message, each with its own offsets.
	Broadcasting
)

func (m Mode) String() string {
	if m == Broadcasting {
		return "broadcasting"
	}
	return "clustering"
}

// StartKind says where a group starts reading a queue it has no committed
// offset for.
type StartKind int

const (
	StartFirst StartKind = iota // the oldest message kept
	StartLast                   // only messages stored from now on
	StartTime                   // messages stored at or after StartFrom.Time
)

// StartFrom is a start position.
type StartFrom struct {
	Kind StartKind
	Time time.Time
}

// GroupSub subscribes a member to a topic's messages that match Filter.
// Topic AnyTopic stands for every topic but the internal ones (`%…`), those
// created later included. Several subscriptions to one topic (or to it and
// AnyTopic) read it once, with the union of their filters (route.AnyOf).
//
// Since, when set, is where the subscription starts on a queue the group
// has no committed offset for: the first message stored at or after it,
// overriding the group's StartFrom. A subscriber that was away when a topic
// it subscribed to was created gets that topic's messages from its start.
type GroupSub struct {
	Topic  string
	Filter route.Filter
	Since  time.Time
}

// MemberOptions describe a member joining a group. The first member of a
// group sets its Mode, StartFrom and MaxRetries.
type MemberOptions struct {
	Mode          Mode
	Subscriptions []GroupSub
	// Ordered delivers each queue's messages one batch at a time, in order;
	// a failed message is retried in place and blocks its queue meanwhile.
	Ordered    bool
	StartFrom  StartFrom
	MaxRetries int // 0: the broker's
}

type cursorKey struct {
	owner string // "" in clustering; the member id in broadcasting
	topic string
	queue int
}

func (k cursorKey) offsetKey() string { return k.topic + "/" + strconv.Itoa(k.queue) }

type pend struct {
	off   int64
	acked bool
	at    time.Time // delivered at
}

// cursor is the consumption state of one queue for a group (clustering) or
// a member (broadcasting): messages below committed() are done; pending
// ones are delivered and not yet acknowledged. All fields under group.mu.
type cursor struct {
	key      cursorKey
	next     int64
	pending  []pend // ascending offsets
	gen      uint64 // bumped when the cursor rewinds: older deliveries are stale
	fetching bool

	owner            *Member
	prevOwner        *Member // a handover waits for it to finish its pending messages
	handoverDeadline time.Time

	suspendUntil time.Time // in-place retry wait
	failOff      int64     // the offset failing in place, and how often it failed
	failCount    int

	// watcher is the Waker a TryPull of its owner (or of an owner
	// before) left on its queue, so that a new one or a Leave takes it
	// off: one at most per cursor.
	watcher Waker
}

func (c *cursor) committed() int64 {
	if len(c.pending) > 0 {
		return c.pending[0].off
	}
	return c.next
}

// rewind drops what is in flight and goes back to off.
func (c *cursor) rewind(off int64) {
	c.next = off
	c.pending = c.pending[:0]
	c.gen++
}

// reset moves the cursor to off by an operator's hand: what is in flight
// is dropped, an in-place retry wait ends, and its owner is woken to
// deliver from there.
func (c *cursor) reset(off int64) {
	c.rewind(off)
	c.suspendUntil, c.failCount = time.Time{}, 0
	if c.owner != nil {
		c.owner.notify()
	}
}

type group struct {
	b          *Broker
	name       string
	mode       Mode
	start      StartFrom
	maxRetries int

	mu      sync.Mutex
	members map[string]*Member
	cursors map[cursorKey]*cursor
}

// Member is one consumer of a group. Its methods are safe for concurrent use.
type Member struct {
	g       *group
	id      string
	ordered bool
	subs    map[string]route.Filter // by topic; all under g.mu after Join
	since   map[string]time.Time    // by topic, when its GroupSub has one

	lastSeen time.Time
	assigned []*cursor
	rr       int
	wake     chan struct{} // closed when the member has something new to look at
	gone     bool
	waker    Waker // TryPull's: the cursors it watches say so (cursor.watcher)
}

// Join adds member id to a group (creating the group), or updates its
// subscriptions if it is in already, and rebalances the group.
func (b *Broker) Join(groupName, id string, o MemberOptions) (*Member, error) {
	if err := checkName("group", groupName); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, fmt.Errorf("%w: empty member id", ErrInvalidName)
	}
	subs, since := map[string]route.Filter{}, map[string]time.Time{}
	for _, s := range o.Subscriptions {
		if t, ok := since[s.Topic]; !s.Since.IsZero() && (!ok || s.Since.Before(t)) {
			since[s.Topic] = s.Since
		}
		if s.Topic != AnyTopic {
			if err := checkName("topic", s.Topic); err != nil {
				return nil, err
			}
		}
		if f, ok := subs[s.Topic]; ok {
			subs[s.Topic] = route.AnyOf(f, s.Filter)
		} else {
			subs[s.Topic] = s.Filter
		}
	}
	if o.Mode == Clustering {
		subs[RetryTopic(groupName)] = route.Filter{}
	}
	if b.isClosed() {
		return nil, ErrClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.groups[groupName]
	if g == nil {
		g = &group{b: b, name: groupName, mode: o.Mode, start: o.StartFrom, maxRetries: o.MaxRetries,
			members: map[string]*Member{}, cursors: map[cursorKey]*cursor{}}
		if g.maxRetries <= 0 {
			g.maxRetries = b.cfg.MaxRetries
		}
		b.groups[groupName] = g
	} else if g.mode != o.Mode {
		return nil, fmt.Errorf("%w: group %q is %s, member %q asks for %s", ErrGroupMode, groupName, g.mode, id, o.Mode)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.members[id]
	if m == nil {
		m = &Member{g: g, id: id, wake: make(chan struct{})}
		g.members[id] = m
		b.consumerWatch.changed(groupName)
	}
	m.ordered, m.subs, m.since, m.lastSeen = o.Ordered, subs, since, time.Now()
	g.rebalance()
	b.logger.Info("core: member joined", "group", groupName, "member", id, "mode", g.mode, "members", len(g.members))
	return m, nil
}

// ID is the member's id.
func (m *Member) ID() string { return m.id }

// sinceFor returns the earliest Since of the member's subscriptions that
// read topic, or zero. Caller holds g.mu.
func (m *Member) sinceFor(topic string) time.Time {
	t := m.since[topic]
	if a, ok := m.since[AnyTopic]; ok && topic != "" && topic[0] != '%' && (t.IsZero() || a.Before(t)) {
		t = a
	}
	return t
}

// filterFor returns the member's filter for topic, and whether it reads the
// topic at all. Caller holds g.mu.
func (m *Member) filterFor(topic string) (route.Filter, bool) {
	f, ok := m.subs[topic]
	if topic == "" || topic[0] == '%' {
		return f, ok
	}
	if wild, wildOK := m.subs[AnyTopic]; wildOK {
		if ok {
			return route.AnyOf(f, wild), true
		}
		return wild, true
	}
	return f, ok
}

// Heartbeat says the member is alive. Pulls count as heartbeats too.
func (m *Member) Heartbeat() {
	m.g.mu.Lock()
	m.lastSeen = time.Now()
	m.g.mu.Unlock()
}

// Leave removes the member; its queues go to the others, and what it had
// not acknowledged is delivered again.
func (m *Member) Leave() {
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.removeLocked(m, "left")
}

func (g *group) removeLocked(m *Member, why string) {
	if m.gone {
		return
	}
	m.gone = true
	delete(g.members, m.id)
	m.unwatchLocked()
	m.notify()
	g.rebalance()
	g.b.consumerWatch.changed(g.name)
	g.b.logger.Info("core: member removed", "group", g.name, "member", m.id, "reason", why, "members", len(g.members))
}

// notify wakes the member's waiting pulls. Caller holds g.mu.
func (m *Member) notify() {
	close(m.wake)
	m.wake = make(chan struct{})
}

// queuesOf is how many queues the group reads of a topic.
func (g *group) queuesOf(topic string) int {
	if topic == RetryTopic(g.name) {
		return 1
	}
	if tp := g.b.topics.get(topic); tp != nil {
		return tp.Queues
	}
	return 0
}

// cursorFor returns the cursor of key, creating it at the group's start
// position or its saved offset. Caller holds g.mu.
func (g *group) cursorFor(key cursorKey, since time.Time) *cursor {
	if c := g.cursors[key]; c != nil {
		return c
	}
	c := &cursor{key: key}
	if off, ok := g.b.savedOffset(g.ownerKey(key.owner), key.offsetKey()); ok {
		c.next = off
	} else if !since.IsZero() {
		c.next = g.b.startOffset(key.topic, key.queue, StartFrom{Kind: StartTime, Time: since}, false)
	} else {
		c.next = g.b.startOffset(key.topic, key.queue, g.start, key.topic == RetryTopic(g.name))
	}
	g.cursors[key] = c
	return c
}

func (g *group) ownerKey(member string) string {
	if member == "" {
		return g.name
	}
	return g.name + "@" + member
}

func (b *Broker) startOffset(topic string, queue int, s StartFrom, retry bool) int64 {
	lo, hi := b.store.Offsets(topic, queue)
	switch {
	case retry || s.Kind == StartFirst:
		return lo
	case s.Kind == StartLast:
		return hi
	default:
		off, err := b.store.OffsetForTime(topic, queue, s.Time)
		if err != nil {
			return lo
		}
		return off
	}
}

// rebalance assigns queues to members. Caller holds g.mu.
func (g *group) rebalance() {
	now := time.Now()
	next := map[*Member][]*cursor{}
	ids := make([]string, 0, len(g.members))
	for id := range g.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	topics := map[string]bool{}
	for _, m := range g.members {
		for t := range m.subs {
			for _, name := range g.b.topics.expand(t) {
				topics[name] = true
			}
		}
	}
	owned := map[*cursor]bool{}
	for t := range topics {
		n := g.queuesOf(t)
		var subscribers []*Member
		for _, id := range ids {
			if _, ok := g.members[id].filterFor(t); ok {
				subscribers = append(subscribers, g.members[id])
			}
		}
		if g.mode == Broadcasting {
			for _, m := range subscribers {
				for q := 0; q < n; q++ {
					c := g.cursorFor(cursorKey{m.id, t, q}, m.sinceFor(t))
					c.owner = m
					next[m] = append(next[m], c)
				}
			}
			continue
		}
		var since time.Time
		for _, m := range subscribers {
			if t := m.sinceFor(t); !t.IsZero() && (since.IsZero() || t.Before(since)) {
				since = t
			}
		}
		for i, m := range subscribers {
			lo, hi := allocate(n, len(subscribers), i)
			for q := lo; q < hi; q++ {
				c := g.cursorFor(cursorKey{"", t, q}, since)
				g.handover(c, m, now)
				owned[c] = true
				next[m] = append(next[m], c)
			}
		}
	}
	if g.mode == Clustering {
		for _, c := range g.cursors {
			if !owned[c] && c.owner != nil {
				g.handover(c, nil, now)
			}
		}
	}
	for _, m := range g.members {
		if !sameCursors(m.assigned, next[m]) {
			m.assigned = next[m]
			m.notify()
		}
	}
}

// handover gives c to m (nil: to nobody). If its owner still holds
// unacknowledged messages of it, m waits for them (up to HandoverTimeout),
// so that no two members ever work on one queue at once.
func (g *group) handover(c *cursor, m *Member, now time.Time) {
	if c.owner == m {
		return
	}
	if c.owner != nil && !c.owner.gone && len(c.pending) > 0 {
		c.prevOwner, c.handoverDeadline = c.owner, now.Add(g.b.cfg.HandoverTimeout)
	} else {
		c.prevOwner = nil
		c.rewind(c.committed())
	}
	c.owner = m
}

// allocate is RocketMQ's average allocation: member i of m gets queues
// [lo, hi) of n.
func allocate(n, m, i int) (lo, hi int) {
	if m == 0 || i >= n {
		return 0, 0
	}
	mod := n % m
	avg := n / m
	if n <= m {
		avg = 1
	} else if mod > 0 && i < mod {
		avg++
	}
	if mod > 0 && i < mod {
		lo = i * avg
	} else {
		lo = i*avg + mod
	}
	return lo, min(lo+avg, n)
}

func sameCursors(a, b []*cursor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Delivery is a message handed to a member. Acknowledge it with Ack or Nack.
type Delivery struct {
	*Message
	Group   string
	Attempt int // 1 on the first delivery

	c       *cursor
	gen     uint64
	off     int64 // in the cursor's queue
	member  *Member
	inPlace bool // failures retry in place (ordered, broadcasting)
}

// Pull returns up to max messages from the member's queues, waiting until
// there is at least one, ctx ends or the broker closes (long polling: it is
// woken by the store, never by polling).
func (m *Member) Pull(ctx context.Context, max int) ([]*Delivery, error) {
	var waitBuf [pullWaits]<-chan struct{} // on the stack unless a member reads more queues
	for short := 0; ; {
		var drained bool
		ds, waits, wake, deadline, err := m.fetch(max, waitBuf[:0], nil, &drained)
		if err != nil || len(ds) > 0 {
			return ds, err
		}
		// A read that stopped short with nothing (a filter's scan limit)
		// reads on at once; each such read moves its cursor on, and past
		// a bound (a cursor that keeps being rewound) the pull waits.
		if !drained && short < PullShortReads {
			short++
			continue
		}
		var timer *time.Timer
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			timer = time.NewTimer(time.Until(deadline))
			timeout = timer.C
		}
		err = m.wait(ctx, wake, timeout, waits)
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return nil, err
		}
	}
}

// TryPull returns up to max messages from the member's queues without
// waiting, and leaves w on those queues: it is woken (once) when one of
// them grows past what TryPull saw, on the goroutine that indexed the
// growth, with no lock of the store's held (storage.Waker). drained says
// that TryPull read every queue it could to that point, so that w tells
// of anything more; otherwise there may be more to read now (max was
// reached), and the caller calls again. retryAt, when not zero, is when a
// queue that cannot be read now (suspended, or handed over from another
// member) opens; Changed tells of new assignments. Leave takes w off the
// queues. A member is served by one Waker.
//
// It is Pull for a consumer with no goroutine parked per member: one that
// the storing goroutine itself serves when it wakes it.
func (m *Member) TryPull(max int, w Waker) (ds []*Delivery, drained bool, retryAt time.Time, err error) {
	ds, _, _, retryAt, err = m.fetch(max, nil, w, &drained)
	return ds, drained, retryAt, err
}

// Changed returns a channel closed when the member's assignments change
// (a rebalance) or it leaves; take it before TryPull to miss none.
func (m *Member) Changed() <-chan struct{} {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	return m.wake
}

// unwatchLocked takes the member's Waker off every queue TryPull watched
// with it; Leave does. Caller holds g.mu (the store's watch lock is taken
// under it, and is never held while taking another).
func (m *Member) unwatchLocked() {
	if m.waker == nil {
		return
	}
	for _, c := range m.g.cursors {
		if c.watcher == m.waker {
			m.g.b.store.Unwatch(c.key.topic, c.key.queue, c.watcher)
			c.watcher = nil
		}
	}
}

// PullShortReads bounds the reads in a row that a puller makes at once
// after a read that stopped short with nothing (Pull, and a TryPull
// caller): past it, the reads wait or go to another goroutine.
const PullShortReads = 64

// pullWaits is how many queue channels a pull waits on with a select
// statement; a member that reads more waits with reflect.Select, which
// allocates its cases on every wait.
const pullWaits = 16

// wait blocks until one of waits or wake is closed, timeout fires, ctx
// ends (its error) or the broker closes (ErrClosed).
func (m *Member) wait(ctx context.Context, wake <-chan struct{}, timeout <-chan time.Time, waits []<-chan struct{}) error {
	if len(waits) <= pullWaits {
		var w [pullWaits]<-chan struct{} // nil channels: cases never chosen
		copy(w[:], waits)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.g.b.closed:
			return ErrClosed
		case <-wake:
		case <-timeout:
		case <-w[0]:
		case <-w[1]:
		case <-w[2]:
		case <-w[3]:
		case <-w[4]:
		case <-w[5]:
		case <-w[6]:
		case <-w[7]:
		case <-w[8]:
		case <-w[9]:
		case <-w[10]:
		case <-w[11]:
		case <-w[12]:
		case <-w[13]:
		case <-w[14]:
		case <-w[15]:
		}
		return nil
	}
	cases := []reflect.SelectCase{
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(m.g.b.closed)},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(wake)},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timeout)},
	}
	for _, w := range waits {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
	}
	switch i, _, _ := reflect.Select(cases); i {
	case 0:
		return ctx.Err()
	case 1:
		return ErrClosed
	}
	return nil
}

// fetch reads what is there without waiting. It returns the channels to
// wait on when there was nothing, and the earliest time a suspended or
// handed-over queue opens.
//
// The channels are appended to waits.
//
// With a Waker w, fetch watches the queues with it (storage.Store.Watch)
// instead of taking their channels, records it in each cursor
// (cursor.watcher), and returns the time a queue opens also when it
// returns messages. It sets *drained when it read every queue it could up
// to the end it found when it took the channel or left the Waker, which
// tell of anything after: when not, a read stopped short (max, a filter's
// scan limit, a rewind) and there may be more to read now.
func (m *Member) fetch(max int, waits []<-chan struct{}, w Waker, drained *bool) ([]*Delivery, []<-chan struct{}, <-chan struct{}, time.Time, error) {
	if max <= 0 {
		max = 32
	}
	g, b := m.g, m.g.b
	now := time.Now()
	g.mu.Lock()
	if m.gone {
		g.mu.Unlock()
		return nil, nil, nil, time.Time{}, fmt.Errorf("%w: %q of %q", ErrNotMember, m.id, g.name)
	}
	m.lastSeen = now
	wake := m.wake
	if w != nil {
		m.waker = w
	}
	var readyBuf [pullWaits]readyCursor
	ready := readyBuf[:0]
	var deadline time.Time
	later := func(t time.Time) {
		if deadline.IsZero() || t.Before(deadline) {
			deadline = t
		}
	}
	n := len(m.assigned)
	for i := 0; i < n; i++ {
		c := m.assigned[(m.rr+i)%n]
		if c.owner != m || c.fetching {
			continue
		}
		if c.prevOwner != nil {
			if len(c.pending) > 0 && !c.prevOwner.gone && now.Before(c.handoverDeadline) {
				later(c.handoverDeadline)
				continue
			}
			c.prevOwner = nil
			c.rewind(c.committed())
		}
		if now.Before(c.suspendUntil) {
			later(c.suspendUntil)
			continue
		}
		if (m.ordered || g.mode == Broadcasting) && len(c.pending) > 0 {
			continue // one batch at a time; an ack wakes us
		}
		c.fetching = true // c.next and c.gen stay as read here until fetching is cleared, but for a rewind's gen
		end := int64(-1)
		if w != nil {
			// Watched here, under g.mu, so that the cursor's watcher is
			// the one on its queue: Leave and DeleteGroup, which take it
			// off, cannot come in between (the store's watch lock is a
			// leaf); a new owner's fetch replaces it here.
			if c.watcher != w {
				if c.watcher != nil {
					b.store.Unwatch(c.key.topic, c.key.queue, c.watcher)
				}
				c.watcher = w
			}
			var err error
			if end, err = b.store.Watch(c.key.topic, c.key.queue, w); err != nil {
				end = -1 // the read below reports it
			}
		}
		f, _ := m.filterFor(c.key.topic)
		ready = append(ready, readyCursor{c: c, from: c.next, gen: c.gen, filter: f, end: end})
	}
	if n > 0 {
		m.rr = (m.rr + 1) % n
	}
	g.mu.Unlock()

	var out []*Delivery
	var ferr error
	all := true // every cursor read to the end it was watched from
	unread := len(ready)
	for i, r := range ready { // a cursor read has its fetching cleared here, the others at the end
		c := r.c
		if len(out) >= max || ferr != nil {
			all = false
			break
		}
		// The channel before the read, and the read only if the queue
		// grew: most of a subscriber's queues have nothing new when it
		// is woken.
		var err error
		end := r.end
		if w == nil {
			var ch <-chan struct{}
			if ch, end, err = b.store.WaitChEnd(c.key.topic, c.key.queue); err == nil {
				waits = append(waits, ch)
			} else {
				end = -1
			}
		}
		if end == r.from {
			continue // nothing new: the channel or the Waker tells of more
		}
		read := false // to the end watched from
		// The deliveries point into res.Messages and keep them until
		// acknowledged: the memory they lie in is never given back.
		res, rerr := b.store.Read(c.key.topic, c.key.queue, r.from, storage.ReadOptions{
			MaxCount: max - len(out), Filter: readFilter(r.filter), Kept: true,
		})
		g.mu.Lock()
		c.fetching = false
		ready[i].c = nil
		unread--
		if rerr != nil {
			if oe, ok := rerr.(*storage.OffsetError); ok && r.from < oe.Min && c.gen == r.gen {
				b.logger.Warn("core: messages deleted before consumed; skipping", "group", g.name, "topic", c.key.topic,
					"queue", c.key.queue, "from", r.from, "to", oe.Min)
				c.rewind(oe.Min)
			} else {
				ferr = fmt.Errorf("core: read %s/%d: %w", c.key.topic, c.key.queue, rerr)
			}
		} else if c.gen == r.gen && c.owner == m && c.next == r.from {
			batch := make([]Delivery, len(res.Messages)) // one allocation for the batch
			for i := range res.Messages {
				msg := &res.Messages[i]
				c.pending = append(c.pending, pend{off: msg.QueueOffset, at: now})
				m.delivery(&batch[i], c, msg)
				out = append(out, &batch[i])
			}
			c.next = res.Next
			if len(c.pending) == 0 {
				b.offsetsChanged()
			}
			read = end >= 0 && res.Next >= end
		}
		g.mu.Unlock()
		all = all && read
	}
	if unread > 0 { // not when every cursor was read: the common case of a busy member
		g.mu.Lock()
		for _, r := range ready {
			if r.c != nil {
				r.c.fetching = false
			}
		}
		g.mu.Unlock()
	}
	*drained = all // a failed read leaves its cursor unread
	if len(out) > 0 {
		return out, nil, nil, deadline, nil
	}
	return nil, waits, wake, deadline, ferr
}

// readyCursor is a cursor fetch reads, with what it read of it under g.mu.
type readyCursor struct {
	c      *cursor
	from   int64
	gen    uint64
	filter route.Filter
	end    int64 // the queue's end when watched (fetch with a Waker), or -1
}

// delivery fills d, the Delivery of msg read from c. d takes msg over.
// Caller holds g.mu.
func (m *Member) delivery(d *Delivery, c *cursor, msg *Message) {
	*d = Delivery{Message: msg, Group: m.g.name, c: c, gen: c.gen, off: msg.QueueOffset, member: m,
		inPlace: m.ordered || m.g.mode == Broadcasting}
	if c.failCount > 0 && c.failOff == msg.QueueOffset {
		d.ReconsumeTimes = int32(c.failCount)
	}
	if c.key.topic == RetryTopic(m.g.name) {
		if t := msg.Properties.Get(propOrigTopic); t != "" {
			d.Topic = t
			d.QueueID, _ = strconv.Atoi(msg.Properties.Get(propOrigQueue))
		}
	}
	d.Attempt = int(d.ReconsumeTimes) + 1
}

// stale reports whether d's queue was rewound since d was delivered.
func (m *Member) stale(d *Delivery) bool {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	return d.c.gen != d.gen
}

// Ack says the delivery was handled. An ack for a delivery whose queue has
// since been rewound (reassigned, reset) is ErrStaleDelivery: the message
// will be delivered again.
func (m *Member) Ack(d *Delivery) error {
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ackLocked(d)
}

func (g *group) ackLocked(d *Delivery) error {
	c := d.c
	if c.gen != d.gen {
		return ErrStaleDelivery
	}
	i := sort.Search(len(c.pending), func(i int) bool { return c.pending[i].off >= d.off })
	if i == len(c.pending) || c.pending[i].off != d.off {
		return ErrStaleDelivery
	}
	c.pending[i].acked = true
	j := 0
	for j < len(c.pending) && c.pending[j].acked {
		j++
	}
	if j > 0 {
		// Past the head, not copied down: acks come mostly in order, and
		// moving the rest of pending on each one cost O(in flight) per ack.
		// append reallocates from the head when it runs out.
		clear(c.pending[:j])
		c.pending = c.pending[j:]
		g.b.offsetsChanged()
		if c.failOff < c.committed() {
			c.failCount = 0
		}
	}
	// A fetch skips a queue with deliveries pending when the member is
	// ordered or broadcasting (one batch at a time) and while a handover
	// waits for the previous owner: those may go on now. Any other member
	// is not woken, or an unordered subscriber's pull would wake for
	// nothing on every acknowledgement that empties its queue.
	if len(c.pending) == 0 && c.owner != nil && (c.prevOwner != nil || c.owner.ordered || g.mode == Broadcasting) {
		c.owner.notify()
	}
	return nil
}

// Nack says the delivery failed: it is retried later. In clustering it
// goes to the group's retry topic with a growing delay (delay level 3 +
// attempts); ordered and broadcasting members retry it in place after
// OrderlyRetryDelay. After MaxRetries it goes to the dead-letter topic.
func (m *Member) Nack(ctx context.Context, d *Delivery, reason error) error {
	g := m.g
	if !d.inPlace {
		if err := g.sendBack(ctx, d, reason); err != nil {
			return err
		}
		return m.Ack(d)
	}
	g.mu.Lock()
	c := d.c
	if c.gen != d.gen {
		g.mu.Unlock()
		return ErrStaleDelivery
	}
	if c.failOff != d.off {
		c.failOff, c.failCount = d.off, 0
	}
	c.failCount++
	if c.failCount <= g.maxRetries {
		c.rewind(d.off)
		c.suspendUntil = time.Now().Add(g.b.cfg.OrderlyRetryDelay)
		m.notify() // its pull now waits for suspendUntil
		g.mu.Unlock()
		return nil
	}
	g.mu.Unlock()
	d.ReconsumeTimes = int32(c.failCount - 1)
	if err := g.deadLetter(ctx, d, reason); err != nil {
		return err
	}
	return m.Ack(d)
}

// sendBack schedules d again on the retry topic, or dead-letters it.
func (g *group) sendBack(ctx context.Context, d *Delivery, reason error) error {
	if int(d.ReconsumeTimes)+1 > g.maxRetries {
		return g.deadLetter(ctx, d, reason)
	}
	return g.sendBackLevel(ctx, d, 0)
}

// sendBackLevel schedules d on the retry topic with delay level (0: level
// 3 + attempts so far, RocketMQ's schedule).
func (g *group) sendBackLevel(ctx context.Context, d *Delivery, level int) error {
	times := int(d.ReconsumeTimes) + 1
	r := g.copyForRetry(d)
	r.Topic, r.QueueID, r.ReconsumeTimes = RetryTopic(g.name), 0, int32(times)
	levels := g.b.cfg.DelayLevels
	if level <= 0 {
		level = 2 + times
	}
	r.DeliverAt = time.Now().Add(levels[min(level, len(levels))-1]).UnixNano()
	_, err := g.b.sched.schedule(ctx, []*Message{r})
	return err
}

func (g *group) deadLetter(ctx context.Context, d *Delivery, reason error) error {
	r := g.copyForRetry(d)
	r.Topic, r.QueueID, r.DeliverAt = DeadLetterTopic(g.name), 0, 0
	if reason != nil {
		r.Properties.Set(propDLQReason, reason.Error())
	}
	if _, err := g.b.topics.ensureInternal(r.Topic); err != nil {
		return err
	}
	_, err := g.b.store1(ctx, []*Message{r})
	if err == nil {
		g.b.logger.Warn("core: message moved to the dead-letter topic", "group", g.name, "topic", d.Topic,
			"attempts", d.ReconsumeTimes+1, "dlq", r.Topic)
	}
	return err
}

func (g *group) copyForRetry(d *Delivery) *Message {
	r := *d.Message
	r.Properties = d.Properties.Clone(3)
	r.Properties.Set(propOrigTopic, d.Topic)
	r.Properties.Set(propOrigQueue, strconv.Itoa(d.QueueID))
	if r.Properties.Get(propOrigMsgID) == "" {
		r.Properties.Set(propOrigMsgID, g.b.store.MessageID(d.LogOffset))
	}
	return &r
}

// OriginalID is the id of the message as first published, for a message
// that came back through retries (else its own id).
func (b *Broker) OriginalID(m *Message) string {
	if id := m.Properties.Get(propOrigMsgID); id != "" {
		return id
	}
	return b.store.MessageID(m.LogOffset)
}

// expireMembers removes members silent longer than HeartbeatTimeout.
func (b *Broker) expireMembers(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.groups {
		g.mu.Lock()
		for _, m := range g.members {
			if now.Sub(m.lastSeen) > b.cfg.HeartbeatTimeout {
				g.removeLocked(m, "heartbeat timeout")
			}
		}
		g.mu.Unlock()
	}
}

// OnTopicChange calls fn after a topic is created, grows or is deleted, by
// any path (auto-creation on publish included): a front-end that announces
// topics (to NameServers) announces the change at once. fn must not block.
func (b *Broker) OnTopicChange(fn func(topic string)) {
	b.mu.Lock()
	b.topicWatchers = append(b.topicWatchers, fn)
	b.mu.Unlock()
}

// topicChanged rebalances the groups that read topic, and tells the
// watchers.
func (b *Broker) topicChanged(topic string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, fn := range b.topicWatchers {
		fn(topic)
	}
	for _, g := range b.groups {
		g.mu.Lock()
		for _, m := range g.members {
			if _, ok := m.filterFor(topic); ok {
				g.rebalance()
				break
			}
		}
		g.mu.Unlock()
	}
}

// ResendDeadLetters publishes the dead letters of a group from offset from
// (up to max of them) again to their origin topics and queues, as new
// messages with a fresh attempt count. It returns how many it re-sent and
// the offset to continue from. The dead letters stay where they are.
func (b *Broker) ResendDeadLetters(ctx context.Context, groupName string, from int64, max int) (int, int64, error) {
	dlq := DeadLetterTopic(groupName)
	res, err := b.store.Read(dlq, 0, from, storage.ReadOptions{MaxCount: max})
	if err != nil {
		return 0, from, fmt.Errorf("core: read %s: %w", dlq, err)
	}
	for i := range res.Messages {
		m := res.Messages[i]
		topic := m.Properties.Get(propOrigTopic)
		q, qerr := strconv.Atoi(m.Properties.Get(propOrigQueue))
		if topic == "" || qerr != nil {
			return i, m.QueueOffset, fmt.Errorf("core: dead letter %d of %s has no origin", m.QueueOffset, dlq)
		}
		props := m.Properties.Clone(0)
		props.Del(propDLQReason)
		props.Del(propOrigTopic)
		props.Del(propOrigQueue)
		m.Topic, m.QueueID, m.Properties, m.ReconsumeTimes, m.DeliverAt = topic, q, props, 0, 0
		if _, err := b.store1(ctx, []*Message{&m}); err != nil {
			return i, m.QueueOffset, err
		}
	}
	return len(res.Messages), res.Next, nil
}
