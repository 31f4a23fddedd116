package mqtt

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
)

// Properties Ferry keeps on messages published over MQTT.
const (
	propQoS         = "MQTT_QOS"
	propClient      = "MQTT_CLIENT" // the publisher's client id, for No Local
	propRetain      = "MQTT_RETAIN"
	propContentType = "MQTT_CONTENT_TYPE"
	propResponse    = "MQTT_RESPONSE_TOPIC"
	propCorrelation = "MQTT_CORRELATION" // base64
	propFormat      = "MQTT_PAYLOAD_FORMAT"
	// propExpiresAt is when a message with a Message Expiry Interval
	// expires, in unix milliseconds: stored with the message, so that an
	// offline session's backlog expires too, and checked at each delivery.
	propExpiresAt = "MQTT_EXPIRES_AT"
)

// ownGroup is the core consumer group of a client's own (not shared)
// subscriptions: "mqtt-" and the client id, with characters a group name
// cannot hold replaced and a hash added when anything was replaced.
func ownGroup(clientID string) string {
	var b strings.Builder
	b.WriteString("mqtt-")
	changed := false
	for _, r := range clientID {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
			changed = true
		}
	}
	name := b.String()
	if changed || len(name) > 80 {
		h := fnv.New64a()
		h.Write([]byte(clientID))
		name = name[:min(len(name), 80)] + "-" + strconv.FormatUint(h.Sum64(), 36)
	}
	return name
}

// session is a connected client: its subscriptions, the feeds that read
// them from the core, and its QoS 1/2 deliveries awaiting acknowledgement.
type session struct {
	srv        *Server
	id         string
	user       string
	cl         *mochi.Client
	persistent bool
	window     int       // most unacknowledged QoS 1/2 deliveries per feed
	since      time.Time // when this connection's session was established

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// The maps are made at their first entry: most sessions of a large
	// fleet stay without some of them, and each empty map costs a header.
	mu    sync.Mutex
	subs  map[string]subState  // by filter as subscribed ($share/… included)
	feeds map[string]*feed     // by core group
	out   map[uint16]*outbound // sent QoS 1/2 deliveries, by packet id
	ended bool

	// willProps are the CONNECT's will properties, which the engine does
	// not keep; nil without a will (256 bytes saved per session).
	willProps *packets.Properties
}

// put sets (*m)[k] to v, making the map at its first entry (a session's
// maps are nil until then).
func put[K comparable, V any](m *map[K]V, k K, v V) {
	if *m == nil {
		*m = make(map[K]V)
	}
	(*m)[k] = v
}

type outbound struct {
	d    *core.Delivery
	pk   packets.Packet
	sent time.Time
	feed *feed
}

// outbounds recycles the records of acknowledged deliveries: a packet
// each, allocated per delivery otherwise.
var outbounds = sync.Pool{New: func() any { return new(outbound) }}

// done frees o, no longer in the session's map, for another delivery.
func (o *outbound) done() {
	*o = outbound{}
	outbounds.Put(o)
}

// feed reads one core group for a session: its own group, or one shared
// group. filters are the MQTT filters it serves (without $share/G/).
//
// A feed is served by whichever goroutine makes it able to send: the one
// that stored a message for it (woken by the store, as a core.Waker, with
// no lock held), the one that handled an acknowledgement that freed its
// window, or its own goroutine, which waits for what is rare: a new
// assignment, a queue that opens later, room in a backlogged connection, a
// failed read. One goroutine serves it at a time (state): a wake while it
// is served has the server go round again. So a device's message reaches
// a caught-up subscriber with no goroutine switch.
type feed struct {
	sess    *session
	group   string
	member  *core.Member
	send    *sendConn                  // nil: a connection with no send queue of ours
	filters atomic.Pointer[[]subState] // replaced whole, never changed in place
	// unacked counts the QoS 1/2 deliveries sent and not yet acknowledged:
	// at most the session's window. A feed that found it full sets
	// starved, and the acknowledgement that frees a slot serves it.
	unacked atomic.Int32
	starved atomic.Bool
	state   atomic.Int32  // feedIdle, feedServed, feedAgain, feedStopped
	kick    chan struct{} // the feed's goroutine is to look again (retryAt, backlog, failure)
	retryAt atomic.Int64  // unix nanos: a queue opens then (0: none)
	blocked atomic.Bool   // a serve stopped for a backlogged connection
	failed  atomic.Pointer[error]
	cancel  context.CancelFunc
	done    chan struct{}
	// stopping is a stop's channel, closed by a server that leaves the
	// feed idle, for the stop to take it then.
	stopping atomic.Pointer[chan struct{}]

	// Only the goroutine serving the feed touches these.
	buf     bytes.Buffer // the PUBLISH packets of one pull, written at once
	packets int64
}

// A feed's states: idle, served by a goroutine, served and woken meanwhile
// (the server goes round again), or stopped (wakes do nothing).
const (
	feedIdle int32 = iota
	feedServed
	feedAgain
	feedStopped
)

// applySubs makes the session's feeds match its subscriptions: one feed for
// its own group, one per shared group, joined with the core topics and
// filters the MQTT filters map onto. It returns the groups it could not
// join, with why. Called with no lock held.
func (ss *session) applySubs() map[string]error {
	failed := map[string]error{}
	ss.mu.Lock()
	if ss.ended {
		ss.mu.Unlock()
		return nil
	}
	want := map[string][]subState{}
	for f, sub := range ss.subs {
		if strings.HasPrefix(f, "$") && !strings.HasPrefix(f, "$share/") {
			continue // $SYS: served by the protocol engine
		}
		group := ownGroup(ss.id)
		if g, filter, ok := shareOf(f); ok {
			group = g
			sub.Filter = filter
		}
		want[group] = append(want[group], sub)
	}
	var stop []*feed
	for g, f := range ss.feeds {
		if _, ok := want[g]; !ok {
			stop = append(stop, f)
			delete(ss.feeds, g)
		}
	}
	ss.mu.Unlock()
	for _, f := range stop {
		f.stop(true)
	}
	for g, filters := range want {
		var gs []core.GroupSub
		for _, sub := range filters {
			s, err := ss.srv.mapper.filter(sub.Filter)
			if err != nil {
				continue // refused at SUBSCRIBE; kept for the protocol engine only
			}
			if sub.At > 0 {
				s.Since = time.UnixMilli(sub.At)
			}
			gs = append(gs, s)
		}
		m, err := ss.srv.core.Join(g, ss.id, core.MemberOptions{Mode: core.Clustering, Subscriptions: gs,
			StartFrom: core.StartFrom{Kind: core.StartLast}})
		if err != nil {
			ss.srv.log.Warn("mqtt: joining the core group failed", "client", ss.id, "group", g, "err", err)
			failed[g] = err
			continue
		}
		ss.mu.Lock()
		f := ss.feeds[g]
		if ss.ended {
			ss.mu.Unlock()
			m.Leave()
			return failed
		}
		if f != nil {
			f.filters.Store(&filters)
		} else {
			ctx, cancel := context.WithCancel(ss.ctx)
			f = &feed{sess: ss, group: g, member: m, send: sendConnOf(ss.cl), kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
			f.filters.Store(&filters) // before the feed runs: deliver reads it
			put(&ss.feeds, g, f)
			ss.wg.Add(1)
			go f.run(ctx)
		}
		ss.mu.Unlock()
	}
	return failed
}

// groupOf returns the core group a subscription filter reads through.
func (ss *session) groupOf(filter string) string {
	if g, _, ok := shareOf(filter); ok {
		return g
	}
	return ownGroup(ss.id)
}

// stop ends the feed's reading; with leave, its membership too, and what
// it had not had acknowledged goes back to the group.
func (f *feed) stop(leave bool) {
	f.cancel()
	<-f.done
	// Wait out a goroutine serving it now; a serve is a few writes that
	// never wait.
	for !f.state.CompareAndSwap(feedIdle, feedStopped) {
		ch := make(chan struct{})
		f.stopping.Store(&ch)
		if f.state.CompareAndSwap(feedIdle, feedStopped) { // idle before it could see ch
			break
		}
		<-ch
	}
	ss := f.sess
	ss.mu.Lock()
	for pid, o := range ss.out {
		if o.feed == f {
			delete(ss.out, pid)
			o.done()
		}
	}
	ss.mu.Unlock()
	if leave {
		f.member.Leave()
	}
}

// run is the feed's own goroutine: it serves the feed once, then again
// whenever something rare calls for it (see feed). The member is kept
// alive by the server's janitor (heartbeat).
func (f *feed) run(ctx context.Context) {
	defer f.sess.wg.Done()
	defer close(f.done)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		changed := f.member.Changed() // before the serve: no new assignment goes unseen
		f.wake(true)
		if p := f.failed.Swap(nil); p != nil {
			err := *p
			if ctx.Err() != nil || errors.Is(err, core.ErrNotMember) || errors.Is(err, core.ErrClosed) {
				return
			}
			f.sess.srv.log.Warn("mqtt: reading a session's messages failed", "client", f.sess.id, "group", f.group, "err", err)
			f.retryAt.Store(time.Now().Add(time.Second).UnixNano())
		}
		var retry <-chan time.Time
		if at := f.retryAt.Swap(0); at != 0 {
			if timer == nil {
				timer = time.NewTimer(time.Until(time.Unix(0, at)))
			} else {
				timer.Reset(time.Until(time.Unix(0, at)))
			}
			retry = timer.C
		}
		var room <-chan struct{}
		if f.send != nil && f.blocked.Swap(false) {
			if room = f.send.roomCh(); room == nil {
				continue // it drained since the serve stopped for it: serve again
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-f.kick:
		case <-retry:
		case <-room:
		}
	}
}

// Wake is the feed's core.Waker: the store calls it when a queue the feed
// watches grows. Here (a device's goroutine that stored the message), it
// serves the feed on the calling goroutine, unless another serves it now,
// which is then made to go round again; on the store's own goroutines, it
// wakes the feed's.
func (f *feed) Wake(here bool) {
	if !here {
		f.kickRun()
		return
	}
	f.wake(false)
}

// wake is Wake; own says the caller is the feed's goroutine, which serves
// for as long as wakes come. Any other goroutine serves one round and
// leaves the wakes that came meanwhile to the feed's goroutine: it has
// its own work to finish (a device's publisher, whose PUBACK waits), and
// with a steady stream of publishes it would otherwise serve the feed for
// everyone, for as long as the stream lasts.
func (f *feed) wake(own bool) {
	for {
		switch f.state.Load() {
		case feedIdle:
			if f.state.CompareAndSwap(feedIdle, feedServed) {
				f.serve(own)
				return
			}
		case feedServed:
			if f.state.CompareAndSwap(feedServed, feedAgain) {
				return
			}
		default: // feedAgain: the server goes round again; feedStopped
			return
		}
	}
}

// serve sends what the feed can and leaves it idle; for the wakes that
// came meanwhile, it goes round again (own) or has the feed's goroutine
// do so.
func (f *feed) serve(own bool) {
	for {
		f.sendAll(own)
		if f.state.CompareAndSwap(feedServed, feedIdle) {
			f.idled()
			return
		}
		if !own { // it was feedAgain
			f.state.Store(feedIdle)
			f.idled()
			f.kickRun()
			return
		}
		f.state.Store(feedServed)
	}
}

// idled tells a stop waiting for the feed to be idle that it is.
func (f *feed) idled() {
	if f.stopping.Load() != nil {
		if ch := f.stopping.Swap(nil); ch != nil {
			close(*ch)
		}
	}
}

// sendAll pulls and sends the feed's messages until it has read all there
// is (the member watches its queues with the feed), the window is full
// (starved: an acknowledgement serves it again), the connection is
// backlogged, a queue opens only later or a read fails: the feed's
// goroutine waits for these, and is woken for them unless it is the
// caller (own), which looks at them once it has served. A caller other
// than the feed's goroutine sends one pull's worth, and wakes the feed's
// goroutine for more: a stream of QoS 0 messages, which no window stops,
// would otherwise keep it as long as the stream lasts.
func (f *feed) sendAll(own bool) {
	kick := func() {
		if !own {
			f.kickRun()
		}
	}
	window := int32(f.sess.window)
	srv := f.sess.srv
	for empty := 0; ; {
		free := window - f.unacked.Load()
		if free <= 0 {
			f.starved.Store(true)
			if free = window - f.unacked.Load(); free <= 0 {
				return // an acknowledgement in between saw starved
			}
		}
		if f.starved.Load() {
			f.starved.Store(false) // acknowledgements no longer wake it
		}
		if f.send != nil && f.send.backlogged() {
			f.blocked.Store(true) // the feed's goroutine waits for room
			kick()
			return
		}
		ds, drained, retryAt, err := f.member.TryPull(int(min(free, 256)), f)
		if err != nil {
			f.failed.Store(&err)
			kick()
			return
		}
		if len(ds) > 0 {
			pulled := time.Now().UnixNano()
			srv.hops.pulled(ds, pulled)
			f.buf.Reset()
			for _, d := range ds {
				f.deliver(d)
			}
			srv.hops.written(f.flush(), pulled)
		}
		if drained { // the queues' growth wakes the feed
			if !retryAt.IsZero() {
				f.retryAt.Store(retryAt.UnixNano())
				kick()
			}
			return
		}
		// More to read now: a full pull, or a read that stopped short (a
		// filter's scan limit, a rewind).
		if len(ds) == 0 {
			empty++
		}
		if !own || empty > core.PullShortReads {
			f.kickRun()
			return
		}
	}
}

// kickRun has the feed's goroutine serve the feed and look at what it
// waits for again.
func (f *feed) kickRun() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// acked frees the window slot of an acknowledged QoS 1/2 delivery. A feed
// that waited for room is served here once a batch's worth is free
// (refillBatch); for less, its goroutine is woken, and the
// acknowledgements that come before it runs join its pull. Serving it on
// every acknowledgement would pull and write one message per PUBACK of a
// subscriber that streams them.
func (f *feed) acked() {
	n := f.unacked.Add(-1)
	if !f.starved.Load() {
		return
	}
	if window := int32(f.sess.window); window-n >= refillBatch(window) {
		if f.starved.Swap(false) {
			f.wake(false)
		}
		return
	}
	f.kickRun()
}

// refillBatch is how many free slots of a window of w have an
// acknowledgement serve the feed itself: a quarter, at most 64.
func refillBatch(w int32) int32 { return max(1, min(w/4, 64)) }

// deliver sends d to the client; one that awaits an acknowledgement (QoS
// 1/2) takes a slot of the window, and one that does not is acknowledged
// to the core at once.
func (f *feed) deliver(d *core.Delivery) {
	ss, srv := f.sess, f.sess.srv
	name := srv.mapper.toMQTT(d.Topic, d.Subject)
	origin := d.Properties.Get(propClient)
	filters := *f.filters.Load() // no lock on the delivery path
	var best subState
	found := false
	var ids []int
	for _, sub := range filters {
		if !matches(sub.Filter, name) || sub.NoLocal && origin == ss.id {
			continue
		}
		if !found || sub.QoS > best.QoS {
			best.QoS = sub.QoS
		}
		best.RetainAsPublished = best.RetainAsPublished || sub.RetainAsPublished
		found = true
		if sub.ID > 0 {
			ids = append(ids, sub.ID)
		}
	}
	if !found || srv.cfg.Guard != nil && !srv.cfg.Guard.Allow(ss.user, ss.id, auth.Read, name) {
		f.member.Ack(d)
		return
	}
	var expiry uint32 // seconds left, 0: none
	if at, ok := expiresAt(d.Properties); ok {
		left := time.Until(time.UnixMilli(at))
		if left <= 0 { // [MQTT-3.3.2-5]
			srv.expired.Add(1)
			f.member.Ack(d)
			return
		}
		// Rounded up: a message with a part of a second left has not
		// expired, and 0 would mean "never" to the client [MQTT-3.3.2-6].
		expiry = uint32(min((left+time.Second-1)/time.Second, 1<<32-1))
	}
	qos := min(messageQoS(d.Message), best.QoS)
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos,
			Retain: best.RetainAsPublished && d.Properties.Get(propRetain) == "1"},
		TopicName: name,
		Payload:   d.Body,
		Created:   time.Now().Unix(),
	}
	if ss.cl.Properties.ProtocolVersion == 5 {
		pk.Properties = outProperties(d.Properties)
		pk.Properties.MessageExpiryInterval = expiry
		if len(ids) > 0 {
			slices.Sort(ids)
			pk.Properties.SubscriptionIdentifier = ids
		}
	}
	if qos == 0 {
		f.encode(pk) // at most once: a failed write is a lost QoS 0 message
		f.member.Ack(d)
		return
	}
	pk.FixedHeader.Dup = d.Attempt > 1
	ss.mu.Lock()
	pid, ok := ss.nextPacketID()
	if !ok {
		ss.mu.Unlock()
		return // stays unacknowledged: the core's ack timeout delivers it again
	}
	pk.PacketID = pid
	if !f.encode(pk) {
		ss.mu.Unlock()
		f.member.Ack(d) // larger than the client takes: it can never have it [MQTT-3.1.2-25]
		return
	}
	o := outbounds.Get().(*outbound)
	*o = outbound{d: d, pk: pk, sent: time.Now(), feed: f}
	put(&ss.out, pid, o)
	f.unacked.Add(1)
	ss.mu.Unlock()
}

// encode appends pk to the feed's buffer; false if the client's maximum
// packet size refuses it.
func (f *feed) encode(pk packets.Packet) bool {
	cl := f.sess.cl
	pk.ProtocolVersion = cl.Properties.ProtocolVersion
	// Without it the codec leaves out Response Topic and Correlation Data
	// (the engine's own WritePacket sets it for every packet but CONNACK).
	pk.Mods.AllowResponseInfo = true
	start := f.buf.Len()
	if err := pk.PublishEncode(&f.buf); err != nil {
		f.buf.Truncate(start)
		return false
	}
	if max := cl.Properties.Props.MaximumPacketSize; max > 0 && uint32(f.buf.Len()-start) > max {
		f.buf.Truncate(start)
		f.sess.srv.log.Info("mqtt: message larger than the client's maximum packet size; not sent", "client", f.sess.id,
			"topic", pk.TopicName, "bytes", len(pk.Payload), "max", max)
		return false
	}
	f.packets++
	return true
}

// flush writes the buffered packets in one write, under the client's lock
// so that they do not interleave with the engine's own packets. A failed
// write ends the connection; unacknowledged deliveries go back to the group.
// It returns how many packets it wrote.
func (f *feed) flush() int {
	if f.buf.Len() == 0 {
		return 0
	}
	cl, srv := f.sess.cl, f.sess.srv
	n, p := int64(f.buf.Len()), f.packets
	f.packets = 0
	if err := writeTo(cl, f.buf.Bytes()); err != nil {
		return 0
	}
	srv.delivered.Add(p)
	atomic.AddInt64(&srv.mq.Info.MessagesSent, p)
	atomic.AddInt64(&srv.mq.Info.PacketsSent, p)
	atomic.AddInt64(&srv.mq.Info.BytesSent, n)
	return int(p)
}

// nextPacketID returns a packet id used neither by a delivery of ours nor
// by the protocol engine. Caller holds ss.mu.
func (ss *session) nextPacketID() (uint16, bool) {
	for range 65535 {
		i, err := ss.cl.NextPacketID()
		if err != nil {
			return 0, false
		}
		if _, busy := ss.out[uint16(i)]; !busy {
			return uint16(i), true
		}
	}
	return 0, false
}

// puback completes a QoS 1 delivery; false if pid is not one of ours.
func (ss *session) puback(pid uint16) bool {
	ss.mu.Lock()
	o := ss.out[pid]
	if o == nil || o.pk.FixedHeader.Qos != 1 {
		ss.mu.Unlock()
		return false
	}
	delete(ss.out, pid)
	ss.mu.Unlock()
	o.feed.member.Ack(o.d)
	o.feed.acked()
	o.done()
	return true
}

// pubrec takes the first step of completing a QoS 2 delivery: the client
// has the message. Its packet id is recorded (durably, for a persistent
// session) as awaiting PUBCOMP, the core delivery is acknowledged, and the
// protocol engine sends PUBREL and waits for PUBCOMP.
func (ss *session) pubrec(pid uint16, failed bool) bool {
	ss.mu.Lock()
	o := ss.out[pid]
	if o == nil || o.pk.FixedHeader.Qos != 2 {
		ss.mu.Unlock()
		return false
	}
	delete(ss.out, pid)
	ss.mu.Unlock()
	if failed { // the client refused it: the exchange ends here [MQTT-4.3.3-4]
		o.feed.member.Ack(o.d)
		o.feed.acked()
		ss.cl.State.Inflight.Set(o.pk) // for the engine to end it quietly
		o.done()
		return true
	}
	if ss.persistent {
		gen := ss.srv.state.update(func() (string, string) {
			st := ss.srv.state.sessions[ss.id]
			if st == nil {
				return "", ""
			}
			st.QoS2Out = append(st.QoS2Out, pid)
			return ss.id, ""
		})
		if err := ss.srv.state.wait(ss.ctx, gen); err != nil {
			ss.srv.log.Warn("mqtt: recording a QoS 2 delivery failed; it will be sent again", "client", ss.id, "err", err)
			ss.mu.Lock()
			ss.out[pid] = o // still awaiting: PUBREC will be asked for again (o came from ss.out: the map exists)
			ss.mu.Unlock()
			return true
		}
	}
	o.feed.member.Ack(o.d)
	o.feed.acked()
	ss.cl.State.Inflight.Set(o.pk) // the engine answers PUBREL and tracks PUBCOMP
	o.done()
	return true
}

// heartbeat keeps the members of the session's feeds alive in the core.
func (ss *session) heartbeat() {
	ss.mu.Lock()
	feeds := ss.feedsLocked()
	ss.mu.Unlock()
	for _, f := range feeds {
		f.member.Heartbeat()
	}
}

// feedsLocked lists the session's feeds, for work done outside ss.mu.
// Caller holds ss.mu.
func (ss *session) feedsLocked() []*feed {
	return slices.AppendSeq(make([]*feed, 0, len(ss.feeds)), maps.Values(ss.feeds))
}

// resend sends again the deliveries that waited longer than the resend
// interval for their acknowledgement.
func (ss *session) resend(now time.Time) {
	ss.mu.Lock()
	var due []packets.Packet
	for _, o := range ss.out {
		if now.Sub(o.sent) >= ss.srv.cfg.ResendInterval {
			o.sent = now
			o.pk.FixedHeader.Dup = true // [MQTT-3.3.1-1]
			due = append(due, o.pk)
		}
	}
	ss.mu.Unlock()
	for _, pk := range due {
		if ss.cl.WritePacket(pk) == nil {
			ss.srv.resent.Add(1)
		}
	}
	if fl, ok := ss.cl.Net.Conn.(interface{ Flush() error }); ok && len(due) > 0 {
		ss.cl.Lock()
		_ = fl.Flush()
		ss.cl.Unlock()
	}
}

// end stops the session's feeds. A session that does not persist loses
// its group and state; a persistent one keeps them for its return.
func (ss *session) end(discard bool) {
	ss.mu.Lock()
	if ss.ended {
		ss.mu.Unlock()
		return
	}
	ss.ended = true
	feeds := ss.feedsLocked()
	ss.mu.Unlock()
	for _, f := range feeds {
		f.stop(true)
	}
	ss.cancel()
	ss.wg.Wait()
	if discard {
		ss.srv.forget(ss.id)
	}
}

func messageQoS(m *core.Message) byte {
	switch m.Properties.Get(propQoS) {
	case "0":
		return 0
	case "2":
		return 2
	}
	return 1 // what other protocols publish is stored: at least once
}

// inProperties maps a PUBLISH onto the stored message's properties.
func inProperties(cl *mochi.Client, pk *packets.Packet) core.Properties {
	p := make(core.Properties, 0, 3+len(pk.Properties.User))
	for _, u := range pk.Properties.User {
		p = append(p, core.Property{Name: u.Key, Value: u.Val})
	}
	p.Dedup()
	addMQTTProps(p.Set, pk.Properties)
	p.Set(propQoS, strconv.Itoa(int(pk.FixedHeader.Qos)))
	p.Set(propClient, cl.ID)
	if pk.FixedHeader.Retain {
		p.Set(propRetain, "1")
	}
	if e := pk.Properties.MessageExpiryInterval; e > 0 {
		p.Set(propExpiresAt, strconv.FormatInt(time.Now().Add(time.Duration(e)*time.Second).UnixMilli(), 10))
	}
	return p
}

// addMQTTProps adds to p the MQTT 5 properties of a message that travel
// with it (content type, response topic, correlation data, payload format)
// as core properties; user properties and expiry are not among them. It
// sets them with set: on the publish path into the message's own.
func addMQTTProps(set func(name, value string), pp packets.Properties) {
	if pp.ContentType != "" {
		set(propContentType, pp.ContentType)
	}
	if pp.ResponseTopic != "" {
		set(propResponse, pp.ResponseTopic)
	}
	if len(pp.CorrelationData) > 0 {
		set(propCorrelation, base64.StdEncoding.EncodeToString(pp.CorrelationData))
	}
	if pp.PayloadFormatFlag {
		set(propFormat, strconv.Itoa(int(pp.PayloadFormat)))
	}
}

// keptProps are the properties of a retained message kept with it: all but
// Ferry's own bookkeeping (the expiry is kept as a time of its own).
func keptProps(p core.Properties) map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p.All() {
		switch k {
		case propQoS, propClient, propRetain, propExpiresAt:
		default:
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// expiresAt returns when the message of props expires (unix
// milliseconds), if it does.
func expiresAt(props core.Properties) (int64, bool) {
	v, ok := props.Lookup(propExpiresAt)
	if !ok {
		return 0, false
	}
	at, err := strconv.ParseInt(v, 10, 64)
	return at, err == nil
}

// outProperties maps a stored message's properties onto MQTT 5 ones; the
// properties of other protocols become user properties.
func outProperties(props core.Properties) packets.Properties {
	var p packets.Properties
	for k, v := range props.All() {
		switch k {
		case propQoS, propClient, propRetain, propExpiresAt:
		case propContentType:
			p.ContentType = v
		case propResponse:
			p.ResponseTopic = v
		case propCorrelation:
			p.CorrelationData, _ = base64.StdEncoding.DecodeString(v)
		case propFormat:
			p.PayloadFormatFlag = true
			if v == "1" {
				p.PayloadFormat = 1
			}
		default:
			p.User = append(p.User, packets.UserProperty{Key: k, Val: v})
		}
	}
	slices.SortFunc(p.User, func(a, b packets.UserProperty) int { return strings.Compare(a.Key, b.Key) })
	return p
}
