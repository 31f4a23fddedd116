package mqtt

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// acker sends the PUBACKs of QoS 1 publishes once they are durable under
// the flush policy: written to the log's file (async flush) or on disk
// (sync). A connection's reader stores a publish without waiting and reads
// on, so no goroutine is parked per publish and the publishes of every
// connection share one write (and fsync); the acker waits for the write
// that covers what is queued and acknowledges all of it, in order per
// connection.
//
// Most acknowledgements take no hand-off at all: the goroutine that handled
// a connection's burst of publishes, once it has handled all the client
// sent (mochi's OnReadIdle), writes what the burst stored and sends the
// queued PUBACKs itself (readIdle), when that takes no waiting: async
// flush, no write of another goroutine under way. Otherwise the acker's
// goroutine does it. A connection that ends before its burst does wakes
// the acker's goroutine (OnDisconnect).
type acker struct {
	s    *Server
	mu   sync.Mutex
	q    []pendingAck
	kick chan struct{}
	// queued counts the PUBACKs in q, for readIdle's look without the lock.
	queued atomic.Int64
	// sending is held by whoever takes batches off q and sends them, so
	// that a connection's PUBACKs go out in the order of its PUBLISHes
	// [MQTT-4.6.0-2].
	sending sync.Mutex
	// missed is set by a now that comes while sending is held; whoever
	// lets go of sending then looks at the queue again, so that now need
	// not wake the acker's goroutine for a PUBACK that the holder may
	// already have taken.
	missed atomic.Bool
	buf    bytes.Buffer // the PUBACKs to one connection; under sending
	spare  []pendingAck // the last batch sent, for the next; under sending
}

type pendingAck struct {
	cl   *mochi.Client
	pid  uint16
	end  int64 // the log offset the message's record ends at
	read int64 // when the PUBLISH was read, unix ns (ferry_mqtt_publish_duration_seconds)
}

func newAcker(s *Server) *acker { return &acker{s: s, kick: make(chan struct{}, 1)} }

// queue queues the PUBACK of a publish whose record ends at end, leaving
// it to the readIdle (or wake) that follows at the end of the burst.
func (a *acker) queue(cl *mochi.Client, pid uint16, end int64, read time.Time) {
	a.mu.Lock()
	a.q = append(a.q, pendingAck{cl, pid, end, read.UnixNano()})
	a.mu.Unlock()
	a.queued.Add(1)
}

// readIdle is mochi's OnReadIdle: a client's packets are all handled. It
// sends the queued PUBACKs (its own and any other's) if there are a few,
// and wakes the acker's goroutine for more: a client streaming publishes
// reads on while the acker, on another processor, writes and acknowledges
// its last burst, where sending them itself would stop its reads meanwhile
// (QoS 1 fan-in lost an eighth of its rate that way).
//
// Before it sends, it yields its processor once. When other goroutines
// are runnable, they are most often readers of other devices with a
// publish each, readied together by one poll of the network: they run
// first, store their publishes and queue their PUBACKs, and the first of
// them to resume writes the log once for all, wakes the subscribers once
// (one write of their PUBLISHes each) and sends every PUBACK; the others
// find the queue empty. A backlog is then written in one go, not a
// message at a time, and costs fewer system calls the longer it is (with
// one processor and 1,000 devices, a sixth less CPU per message). When
// nothing else is runnable, the yield returns at once.
func (a *acker) readIdle(*mochi.Client) {
	switch n := a.queued.Load(); {
	case n == 0:
	case n <= inlineAcks:
		runtime.Gosched()
		a.now()
	default:
		a.wake()
	}
}

// inlineAcks is the most queued PUBACKs readIdle sends itself: a device's
// publish or a few (a fleet of devices, each sending now and then).
const inlineAcks = 8

func (a *acker) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// now sends the queued PUBACKs on the calling goroutine if the records
// they acknowledge can be made durable without waiting (core.WriteNow),
// and leaves them to the acker's goroutine otherwise.
//
// When another goroutine is sending, now leaves the PUBACKs to it: its
// caller queued them before now set missed, so the sender either takes
// them or, once it lets go, sees missed and looks again. (Waking the
// acker's goroutine instead cost a goroutine switch for a third of a
// 1,000-device fleet's publishes.)
func (a *acker) now() {
	for {
		a.missed.Store(true)
		if !a.sending.TryLock() {
			return
		}
		a.missed.Store(false) // what came before is queued: this send takes it
		if !a.sendDurable() {
			a.sending.Unlock() // the acker's goroutine was woken for the rest
			return
		}
		if !a.unlock() {
			return
		}
	}
}

// unlock lets go of sending and says whether a now found it held
// meanwhile (missed): the caller then sends what it left, with now.
func (a *acker) unlock() bool {
	a.sending.Unlock()
	return a.missed.Load()
}

// sendDurable sends queued PUBACKs for as long as core.WriteNow makes
// their records durable without waiting, until the queue is empty (true),
// or leaves them to the acker's goroutine (false). Caller holds sending.
func (a *acker) sendDurable() bool {
	for {
		batch := a.take()
		if len(batch) == 0 {
			return true
		}
		done, err := a.s.core.WriteNow(maxEnd(batch))
		if !done {
			a.putBack(batch)
			a.wake()
			return false
		}
		a.send(batch, err)
	}
}

func (a *acker) run(ctx context.Context) {
	defer a.s.wg.Done()
	for {
		select {
		case <-a.kick:
		case <-ctx.Done():
			return // unacknowledged publishes are sent again by their clients
		}
		a.drain(ctx)
	}
}

// drain sends the queued PUBACKs, each batch once the records it
// acknowledges are durable, until the queue is empty or ctx ends.
func (a *acker) drain(ctx context.Context) {
	a.sending.Lock()
	defer func() {
		if a.unlock() {
			a.now()
		}
	}()
	for {
		batch := a.take()
		if len(batch) == 0 {
			return
		}
		err := a.s.core.WaitDurable(ctx, maxEnd(batch))
		if ctx.Err() != nil {
			return
		}
		// The write that made these durable (often the acker's own)
		// indexed them and readied the subscribers' feeds, or the
		// dispatcher that indexes them: let those run before this
		// goroutine spends a write per connection on acknowledgements.
		runtime.Gosched()
		a.send(batch, err)
	}
}

// take takes the queued PUBACKs. The queue and the batch being sent trade
// places: adders append to one while the other is sent, and neither is
// allocated again once grown to the load. Caller holds sending.
func (a *acker) take() []pendingAck {
	a.mu.Lock()
	defer a.mu.Unlock()
	batch := a.q
	if len(batch) > 0 {
		a.q = a.spare // adders must never write into the batch being sent
		a.spare = nil
		a.queued.Add(-int64(len(batch)))
	}
	return batch
}

// putBack returns a batch taken and not sent to the head of the queue.
// Caller holds sending.
func (a *acker) putBack(batch []pendingAck) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.queued.Add(int64(len(batch)))
	if len(a.q) > 0 {
		batch = append(batch, a.q...)
		clear(a.q)
	}
	a.spare = a.q[:0]
	a.q = batch
}

func maxEnd(batch []pendingAck) int64 {
	var end int64
	for _, p := range batch {
		end = max(end, p.end)
	}
	return end
}

// send writes the PUBACKs of batch, one write per connection; err is why
// the records could not be made durable, which fails them. Caller holds
// sending.
func (a *acker) send(batch []pendingAck, err error) {
	buf := &a.buf
	for i := 0; i < len(batch); {
		cl := batch[i].cl
		buf.Reset()
		j := i
		for ; j < len(batch) && batch[j].cl == cl; j++ {
			ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: batch[j].pid,
				ProtocolVersion: cl.Properties.ProtocolVersion}
			if err != nil { // stored, not synced: never a success [MQTT-4.3.2-2]
				ack.ReasonCode = packets.ErrUnspecifiedError.Code
			}
			_ = ack.PubackEncode(buf)
		}
		if err != nil && cl.Properties.ProtocolVersion < 5 {
			a.s.log.Warn("mqtt: a stored publish could not be synced; closing the connection", "client", cl.ID, "err", err)
			cl.Stop(err) // 3.1.1 has no negative acknowledgement
		} else {
			_ = writeTo(cl, buf.Bytes())
		}
		now := time.Now().UnixNano()
		for _, p := range batch[i:j] {
			a.s.publishLatency.Observe(float64(now-p.read) / 1e9)
		}
		i = j
	}
	clear(batch) // the clients, for the collector
	a.spare = batch[:0]
}

// writeTo writes encoded packets to the client, under the client's lock so
// that they do not interleave with the engine's own packets. It does not
// wait for the client: what its socket does not take at once is queued for
// the connection's writer (sendConn).
func writeTo(cl *mochi.Client, b []byte) error {
	if cl.Closed() || cl.Net.Conn == nil {
		return mochi.ErrConnectionClosed
	}
	cl.Lock()
	defer cl.Unlock()
	_, err := cl.Net.Conn.Write(b)
	if fl, ok := cl.Net.Conn.(interface{ Flush() error }); ok && err == nil {
		err = fl.Flush()
	}
	return err
}
