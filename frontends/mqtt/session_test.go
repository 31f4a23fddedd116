package mqtt

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

func persistent(o *paho.ClientOptions) { o.SetCleanSession(false) }

// The acceptance test: subscribe, disconnect, 1,000 QoS 1 messages
// published, Ferry restarted, reconnect: all 1,000 arrive.
func TestPersistentSessionSurvivesRestart(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	sub := f.connect("keeper", persistent)
	wait(t, sub.Subscribe("fleet/+/telemetry", 1, nil), "subscribe")
	sub.Disconnect(100)

	pub := f.connect("pub")
	const n = 1000
	for i := range n {
		wait(t, pub.Publish(fmt.Sprintf("fleet/%d/telemetry", i%10), 1, false, fmt.Sprint(i)), "publish")
	}
	pub.Disconnect(100)
	f.restart()

	in := newInbox()
	f.connect("keeper", persistent, func(o *paho.ClientOptions) { o.SetDefaultPublishHandler(in.handler) })
	got := in.waitN(t, n)
	seen := map[string]bool{}
	last := map[string]int{}
	for _, m := range got {
		seen[string(m.Payload())] = true
		var i int
		fmt.Sscan(string(m.Payload()), &i)
		if prev, ok := last[m.Topic()]; ok && i < prev {
			t.Errorf("%s: %d after %d: order lost", m.Topic(), i, prev)
		}
		last[m.Topic()] = i
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages, want %d", len(seen), n)
	}
}

func TestCleanSessionLeavesNothingBehind(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	c := f.connect("ephemeral")
	wait(t, c.Subscribe("x/#", 1, nil), "subscribe")
	c.Disconnect(100)
	deadline := time.Now().Add(5 * time.Second) // the server's side of the disconnect
	for f.mqtt.Stats().Connections > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := f.core.Group(ownGroup("ephemeral")); err == nil {
		t.Fatal("a clean session's group outlived it")
	}
	if st := f.mqtt.Stats(); st.Sessions != 0 {
		t.Fatalf("%d sessions kept, want 0", st.Sessions)
	}
}

func TestRetainedMessagesSurviveRestart(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	pub := f.connect("pub")
	wait(t, pub.Publish("status/door", 1, true, "open"), "publish retained")
	wait(t, pub.Publish("status/window", 1, true, "shut"), "publish retained")
	wait(t, pub.Publish("status/window", 1, true, ""), "clear retained")
	pub.Disconnect(100)
	f.restart()

	in := newInbox()
	sub := f.connect("late")
	wait(t, sub.Subscribe("status/#", 1, in.handler), "subscribe")
	got := in.waitN(t, 1)
	if got[0].Topic() != "status/door" || string(got[0].Payload()) != "open" || !got[0].Retained() {
		t.Fatalf("got %s %q retained=%v, want status/door \"open\" retained", got[0].Topic(), got[0].Payload(), got[0].Retained())
	}
}

func TestWillIsPublishedWhenTheConnectionDrops(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	in := newInbox()
	watcher := f.connect("watcher")
	wait(t, watcher.Subscribe("presence/#", 1, in.handler), "subscribe")

	var mu sync.Mutex
	var conns []net.Conn
	f.connect("device-7", cuttable(&conns, &mu), func(o *paho.ClientOptions) {
		o.SetWill("presence/device-7", "gone", 1, true)
	})
	polite := f.connect("device-8", func(o *paho.ClientOptions) { o.SetWill("presence/device-8", "gone", 1, false) })
	polite.Disconnect(100) // a DISCONNECT: no will [MQTT-3.1.2-10]
	mu.Lock()
	conns[0].Close()
	mu.Unlock()

	got := in.waitN(t, 1)
	if got[0].Topic() != "presence/device-7" || string(got[0].Payload()) != "gone" {
		t.Fatalf("got %s %q", got[0].Topic(), got[0].Payload())
	}
	// The will was retained: a later subscriber gets it.
	late := newInbox()
	c := f.connect("late")
	wait(t, c.Subscribe("presence/#", 1, late.handler), "subscribe")
	late.waitN(t, 1)
}

// Messages wait in the store for a subscriber that does not acknowledge:
// it gets at most its window at once, the rest when it acknowledges, and
// what it does not acknowledge is sent again on a timer, not only on
// reconnect.
func TestUnacknowledgedDeliveriesAreResentOnATimer(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{MaxInflight: 4, ResendInterval: 200 * time.Millisecond})
	in := newInbox()
	slow := f.connect("slow", func(o *paho.ClientOptions) { o.SetAutoAckDisabled(true) })
	wait(t, slow.Subscribe("work/#", 1, in.handler), "subscribe")
	pub := f.connect("pub")
	for i := range 10 {
		wait(t, pub.Publish("work/items", 1, false, fmt.Sprint(i)), "publish")
	}
	deadline := time.Now().Add(3 * time.Second)
	for in.len() < 8 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := in.all()
	distinct := map[string]bool{}
	dups := 0
	for _, m := range got {
		distinct[string(m.Payload())] = true
		if m.Duplicate() {
			dups++
		}
	}
	if len(distinct) != 4 || dups == 0 {
		t.Fatalf("an unacknowledging subscriber with a window of 4 got %d distinct messages and %d resends, want 4 and some", len(distinct), dups)
	}
	for _, m := range got {
		m.Ack()
	}
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range in.all() {
			m.Ack()
			distinct[string(m.Payload())] = true
		}
		if len(distinct) == 10 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("got %d distinct messages after acknowledging, want 10", len(distinct))
}

// An offline persistent session keeps at most mqtt.max-queued messages:
// past it the oldest are skipped, and counted.
func TestOfflineSessionBacklogIsBounded(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{MaxQueued: 10, ResendInterval: 100 * time.Millisecond})
	sub := f.connect("away", persistent)
	wait(t, sub.Subscribe("feed/#", 1, nil), "subscribe")
	sub.Disconnect(100)
	pub := f.connect("pub")
	for i := range 50 {
		wait(t, pub.Publish("feed/x", 1, false, fmt.Sprint(i)), "publish")
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.mqtt.Stats().Dropped < 40 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d := f.mqtt.Stats().Dropped; d != 40 {
		t.Fatalf("dropped %d, want 40", d)
	}
	in := newInbox()
	f.connect("away", persistent, func(o *paho.ClientOptions) { o.SetDefaultPublishHandler(in.handler) })
	got := in.waitN(t, 10)
	if string(got[0].Payload()) != "40" || string(got[9].Payload()) != "49" {
		t.Fatalf("kept %s..%s, want the newest: 40..49", got[0].Payload(), got[9].Payload())
	}
}

// A second connection with the same client id takes the session over: the
// first is disconnected, the second gets the subscription's messages, and
// no message is delivered on both.
func TestSessionTakeover(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	first := newInbox()
	a := f.connect("roamer", persistent, func(o *paho.ClientOptions) { o.SetDefaultPublishHandler(first.handler) })
	wait(t, a.Subscribe("roam/#", 1, nil), "subscribe")
	pub := f.connect("pub")
	for i := range 10 {
		wait(t, pub.Publish("roam/x", 1, false, fmt.Sprint(i)), "publish")
	}
	first.waitN(t, 10)
	second := newInbox()
	f.connect("roamer", persistent, func(o *paho.ClientOptions) { o.SetDefaultPublishHandler(second.handler) })
	deadline := time.Now().Add(5 * time.Second)
	for a.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a.IsConnectionOpen() {
		t.Fatal("the first connection is still open after the takeover")
	}
	for i := 10; i < 20; i++ {
		wait(t, pub.Publish("roam/x", 1, false, fmt.Sprint(i)), "publish")
	}
	got := second.waitN(t, 10)
	if string(got[0].Payload()) != "10" {
		t.Fatalf("the new connection got %s first, want 10 (a message from before the takeover came again)", got[0].Payload())
	}
	if first.len() != 10 {
		t.Fatalf("the old connection got %d messages, want 10", first.len())
	}
}

// QoS 1 publishes in flight on a connection share writes (async flush) or
// fsyncs (sync): the acker acknowledges each once durable, in order, none
// forgotten, with four connections publishing at once.
func TestQoS1PublishesAreAcknowledgedOnceDurable(t *testing.T) {
	t.Run("async", func(t *testing.T) { acknowledgedOnceDurable(t, false) })
	t.Run("sync", func(t *testing.T) { acknowledgedOnceDurable(t, true) })
}

func acknowledgedOnceDurable(t *testing.T, syncFlush bool) {
	f := &ferry{t: t, dir: t.TempDir(), sync: syncFlush}
	f.start("127.0.0.1:0")
	t.Cleanup(f.stop)
	in := newInbox()
	sub := f.connect("sub")
	wait(t, sub.Subscribe("durable/#", 1, in.handler), "subscribe")
	const pubs, n = 4, 1000
	var wg sync.WaitGroup
	for p := range pubs {
		pub := f.connect(fmt.Sprint("pub", p))
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks := make([]paho.Token, n)
			for i := range n {
				toks[i] = pub.Publish(fmt.Sprint("durable/", p), 1, false, fmt.Sprint(i))
			}
			for i, tok := range toks {
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Errorf("publisher %d, message %d: not acknowledged (%v)", p, i, tok.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second) // indexed moments after it is stored
	for countMessages(t, f.core, "durable") < pubs*n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := countMessages(t, f.core, "durable"); got != pubs*n {
		t.Fatalf("%d stored, want %d", got, pubs*n)
	}
	next := map[string]int{}
	for _, m := range in.waitN(t, pubs*n) {
		if string(m.Payload()) != fmt.Sprint(next[m.Topic()]) {
			t.Fatalf("%s: message %s after %d: order lost", m.Topic(), m.Payload(), next[m.Topic()])
		}
		next[m.Topic()]++
	}
}

// A feed keeps at most the window unacknowledged, and each PUBACK lets the
// next deliveries go: one at a time with a small window (an acknowledgement
// serves the feed itself), or in batches (its goroutine pulls what the
// acknowledgements freed meanwhile).
func TestFeedWindowRefills(t *testing.T) {
	for _, window := range []int{3, 16} {
		t.Run(fmt.Sprint("window ", window), func(t *testing.T) {
			f := startFerry(t, t.TempDir(), Config{MaxInflight: window})
			sub, pub := rawSubAndPub(t, f, "win/#")
			const n = 100
			for i := range n {
				pub.send(publishPacket("win/x", 1, uint16(i+1), []byte(fmt.Sprint(i))))
				pub.expect(packets.Puback)
			}
			// The window's worth comes, and nothing past it.
			var held []uint16
			got := map[string]bool{}
			for range window {
				pk := sub.expect(packets.Publish)
				held = append(held, pk.PacketID)
				got[string(pk.Payload)] = true
			}
			if pk, err := sub.recvWithin(200 * time.Millisecond); err == nil {
				t.Fatalf("a delivery past the window of %d: packet type %d", window, pk.FixedHeader.Type)
			}
			// Acknowledged one at a time as they come, the rest arrive.
			for len(got) < n {
				sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: held[0]})
				held = held[1:]
				for len(held) < window && len(got) < n {
					pk, err := sub.recvWithin(10 * time.Second)
					if err != nil {
						t.Fatalf("after %d deliveries with %d unacknowledged: %v", len(got), len(held), err)
					}
					if pk.FixedHeader.Type != packets.Publish {
						continue
					}
					if got[string(pk.Payload)] {
						t.Fatalf("delivered twice: %s", pk.Payload)
					}
					held = append(held, pk.PacketID)
					got[string(pk.Payload)] = true
				}
			}
		})
	}
}

// A subscriber that stops reading holds its feed back once its connection
// has sendHighWater bytes queued, rather than being cut off at
// sendMaxPending; when it reads again, everything comes, in order.
func TestFeedWaitsForASlowReader(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	sub, pub := rawSubAndPub(t, f, "slow/#")
	body := make([]byte, 16<<10)
	n := 4 * sendMaxPending / len(body) // past what a connection may queue and its socket buffers hold
	for i := range n {
		copy(body, fmt.Sprintf("%08d", i))
		pub.send(publishPacket("slow/x", 0, 0, body))
	}
	pub.send(publishPacket("slow/x", 1, 1, []byte("last")))
	pub.expect(packets.Puback) // every publish is stored
	for i := range n {
		pk, err := sub.recvWithin(10 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got := string(pk.Payload[:8]); got != fmt.Sprintf("%08d", i) {
			t.Fatalf("message %d: got %s", i, got)
		}
	}
	if pk := sub.expect(packets.Publish); string(pk.Payload) != "last" {
		t.Fatalf("last message %q", pk.Payload)
	}
}

// rawSubAndPub connects an MQTT 3.1.1 subscriber on filter (at QoS 1) and
// a publisher, both raw clients.
func rawSubAndPub(t *testing.T, f *ferry, filter string) (sub, pub *rawClient) {
	t.Helper()
	sub = dialRaw(t, f.addr, 4)
	sub.connect("sub")
	sub.send(subscribePacket(1, filter))
	sub.expect(packets.Suback)
	pub = dialRaw(t, f.addr, 4)
	pub.connect("pub")
	return sub, pub
}

// Publishers racing each other serve one subscriber's feed from their own
// goroutines, and hand it to the feed's goroutine when it is busy: every
// message arrives, the last ones too, with no publish after them to wake
// the feed.
func TestFeedServedByRacingPublishers(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	sub, _ := rawSubAndPub(t, f, "race/#")
	const pubs, each = 4, 2000
	var wg sync.WaitGroup
	for p := range pubs {
		pub := dialRaw(t, f.addr, 4)
		pub.connect(fmt.Sprint("racer-", p))
		// Encoded here, sent one write each there: the helpers fail the
		// test, which only its own goroutine may do.
		var enc bytes.Buffer
		ends := make([]int, each)
		for i := range each {
			encodeRaw(t, &enc, publishPacket(fmt.Sprintf("race/%d", p), 0, 0, []byte(fmt.Sprint(p, "/", i))), 4)
			ends[i] = enc.Len()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, from := enc.Bytes(), 0
			for _, end := range ends {
				if _, err := pub.c.Write(b[from:end]); err != nil {
					t.Errorf("publisher %d: %v", p, err)
					return
				}
				from = end
			}
		}()
	}
	seen := map[string]bool{}
	for len(seen) < pubs*each {
		pk, err := sub.recvWithin(10 * time.Second)
		if err != nil {
			t.Fatalf("%d of %d messages arrived: %v", len(seen), pubs*each, err)
		}
		seen[string(pk.Payload)] = true
	}
	wg.Wait()
}
