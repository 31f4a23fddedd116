package mqtt

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ferrymq/ferry/core"
)

// expectPublish reads the next packet and fails unless it is a PUBLISH on
// topic; a QoS 1 delivery is acknowledged.
func (rc *rawClient) expectPublish(topic string) packets.Packet {
	rc.t.Helper()
	pk := rc.expect(packets.Publish)
	if pk.TopicName != topic {
		rc.t.Fatalf("PUBLISH on %q (%q), want %q", pk.TopicName, pk.Payload, topic)
	}
	if pk.FixedHeader.Qos == 1 {
		rc.send(ackPacket(packets.Puback, pk.PacketID))
	}
	return pk
}

// expectNothing fails if a packet comes within d.
func (rc *rawClient) expectNothing(d time.Duration) {
	rc.t.Helper()
	if pk, err := rc.recvWithin(d); err == nil {
		rc.t.Fatalf("got packet type %d on %q (%q, retain %v), want none", pk.FixedHeader.Type, pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
	}
}

func (rc *rawClient) subscribe(id uint16, filter string) {
	rc.t.Helper()
	rc.send(subscribePacket(id, filter))
	if ack := rc.expect(packets.Suback); len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] > 2 {
		rc.t.Fatalf("SUBACK %v for %q", ack.ReasonCodes, filter)
	}
}

// Request/response: Response Topic, Correlation Data, Content Type,
// Payload Format and user properties reach the responder, the correlation
// data comes back with the reply, and native consumers see them all as
// core properties.
func TestRequestResponseProperties(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	native, err := f.core.Join("native-svc", "n1", core.MemberOptions{Subscriptions: []core.GroupSub{{Topic: "svc"}},
		StartFrom: core.StartFrom{Kind: core.StartFirst}})
	if err != nil {
		t.Fatal(err)
	}
	responder := dialRaw(t, f.addr, 5)
	responder.connect("responder")
	responder.subscribe(1, "svc/echo")
	requester := dialRaw(t, f.addr, 5)
	requester.connect("requester")
	requester.subscribe(1, "replies/requester")

	req := publishPacket("svc/echo", 1, 7, []byte("ping"))
	req.Properties = packets.Properties{ResponseTopic: "replies/requester", CorrelationData: []byte{0, 1, 0xff},
		ContentType: "text/plain", PayloadFormat: 1, PayloadFormatFlag: true,
		User: []packets.UserProperty{{Key: "trace", Val: "t-1"}}}
	requester.send(req)
	requester.expectAck(packets.Puback, 7)

	got := responder.expectPublish("svc/echo")
	p := got.Properties
	if p.ResponseTopic != "replies/requester" || !bytes.Equal(p.CorrelationData, []byte{0, 1, 0xff}) ||
		p.ContentType != "text/plain" || !p.PayloadFormatFlag || p.PayloadFormat != 1 ||
		len(p.User) != 1 || p.User[0] != (packets.UserProperty{Key: "trace", Val: "t-1"}) {
		t.Fatalf("request delivered with properties %+v", p)
	}
	reply := publishPacket(p.ResponseTopic, 1, 8, []byte("pong"))
	reply.Properties.CorrelationData = p.CorrelationData
	responder.send(reply)
	responder.expectAck(packets.Puback, 8)
	if r := requester.expectPublish("replies/requester"); !bytes.Equal(r.Properties.CorrelationData, []byte{0, 1, 0xff}) || string(r.Payload) != "pong" {
		t.Fatalf("reply %q with correlation data %v", r.Payload, r.Properties.CorrelationData)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := native.Pull(ctx, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("native pull: %d messages, %v", len(ds), err)
	}
	want := map[string]string{propResponse: "replies/requester", propCorrelation: "AAH/", propContentType: "text/plain",
		propFormat: "1", "trace": "t-1"}
	for k, v := range want {
		if ds[0].Properties.Get(k) != v {
			t.Errorf("native consumer sees %s=%q, want %q (all: %v)", k, ds[0].Properties.Get(k), v, ds[0].Properties)
		}
	}
}

// Message Expiry Interval [MQTT-3.3.2-5] [MQTT-3.3.2-6]: a message whose
// interval passed while it waited in an offline session's backlog is not
// delivered; one still alive is delivered with what is left of its
// interval. The same for a 3.1.1 subscriber, which gets no interval.
func TestMessageExpiry(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	sub := dialRaw(t, f.addr, 5)
	sub.connectPersistent("exp-sub")
	sub.subscribe(1, "exp/#")
	sub.c.Close()
	old := dialRaw(t, f.addr, 4)
	old.connectPersistent("exp-old")
	old.subscribe(1, "exp/#")
	old.c.Close()

	pub := dialRaw(t, f.addr, 5)
	pub.connect("exp-pub")
	short := publishPacket("exp/short", 1, 1, []byte("short"))
	short.Properties.MessageExpiryInterval = 1
	pub.send(short)
	pub.expectAck(packets.Puback, 1)
	long := publishPacket("exp/long", 1, 2, []byte("long"))
	long.Properties.MessageExpiryInterval = 100
	pub.send(long)
	pub.expectAck(packets.Puback, 2)
	time.Sleep(2100 * time.Millisecond)

	sub = dialRaw(t, f.addr, 5)
	sub.connectPersistent("exp-sub")
	got := sub.expectPublish("exp/long")
	if e := got.Properties.MessageExpiryInterval; e < 90 || e > 98 {
		t.Fatalf("delivered with a Message Expiry Interval of %d s, want 100 less the 2 s it waited", e)
	}
	sub.expectNothing(500 * time.Millisecond)
	old = dialRaw(t, f.addr, 4)
	old.connectPersistent("exp-old")
	old.expectPublish("exp/long")
	old.expectNothing(500 * time.Millisecond)
	if n := f.mqtt.Stats().Expired; n != 2 {
		t.Fatalf("Stats().Expired = %d, want 2", n)
	}

	// Live, with the interval forwarded as published less the time held.
	live := publishPacket("exp/live", 1, 3, []byte("live"))
	live.Properties.MessageExpiryInterval = 30
	pub.send(live)
	pub.expectAck(packets.Puback, 3)
	if e := sub.expectPublish("exp/live").Properties.MessageExpiryInterval; e < 29 || e > 30 {
		t.Fatalf("live delivery with a Message Expiry Interval of %d s, want 29..30", e)
	}

	// A retained message expires too.
	ret := publishPacket("exp/retained", 1, 4, []byte("r"))
	ret.FixedHeader.Retain, ret.Properties.MessageExpiryInterval = true, 1
	pub.send(ret)
	pub.expectAck(packets.Puback, 4)
	sub.expectPublish("exp/retained")
	late := dialRaw(t, f.addr, 5)
	late.connect("exp-late")
	late.send(subscribePacket(1, "exp/retained"))
	late.expect(packets.Suback)
	if pk := late.expectPublish("exp/retained"); pk.Properties.MessageExpiryInterval != 1 || !pk.FixedHeader.Retain {
		t.Fatalf("retained message at SUBSCRIBE: interval %d, retain %v", pk.Properties.MessageExpiryInterval, pk.FixedHeader.Retain)
	}
	time.Sleep(1100 * time.Millisecond) // expired, though maybe not yet swept by the engine's once-a-second pass
	later := dialRaw(t, f.addr, 5)
	later.connect("exp-later")
	later.send(subscribePacket(1, "exp/retained"))
	later.expect(packets.Suback)
	later.expectNothing(500 * time.Millisecond)

	// A retained message keeps its expiry and properties across a restart.
	kept := publishPacket("exp/kept", 1, 5, []byte("k"))
	kept.FixedHeader.Retain, kept.Properties.MessageExpiryInterval, kept.Properties.ContentType = true, 100, "text/plain"
	pub.send(kept)
	pub.expectAck(packets.Puback, 5)
	f.restart()
	after := dialRaw(t, f.addr, 5)
	after.connect("exp-after")
	after.send(subscribePacket(1, "exp/kept"))
	after.expect(packets.Suback)
	if pk := after.expectPublish("exp/kept"); pk.Properties.MessageExpiryInterval < 95 || pk.Properties.MessageExpiryInterval > 100 ||
		pk.Properties.ContentType != "text/plain" {
		t.Fatalf("retained after a restart: interval %d, content type %q", pk.Properties.MessageExpiryInterval, pk.Properties.ContentType)
	}
}

// Topics with an empty first level (`/TopicA`) are published, subscribed
// (exactly and through wildcards) and used as wills, and are core topic
// RootTopic to native consumers.
func TestEmptyFirstLevel(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	in := map[string]*inbox{}
	sub := f.connect("slash-sub")
	for _, filter := range []string{"/TopicA", "+/TopicA", "#", "/#"} {
		in[filter] = newInbox()
		wait(t, sub.Subscribe(filter, 1, in[filter].handler), "subscribe "+filter)
	}
	pub := f.connect("slash-pub")
	wait(t, pub.Publish("/TopicA", 1, false, "hello"), "publish /TopicA")
	for filter, box := range in {
		if m := box.waitN(t, 1)[0]; m.Topic() != "/TopicA" || string(m.Payload()) != "hello" {
			t.Fatalf("%s got %q on %q", filter, m.Payload(), m.Topic())
		}
	}
	if n := countMessages(t, f.core, RootTopic); n != 1 {
		t.Fatalf("core topic %s holds %d messages, want 1", RootTopic, n)
	}

	// A will on /TopicA: the raw client goes away without DISCONNECT.
	w := dialRaw(t, f.addr, 4)
	pk := connectPacket("slash-will")
	pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload, pk.Connect.WillQos = true, "/TopicA", []byte("gone"), 1
	w.send(pk)
	if ack := w.expect(packets.Connack); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x for a will on /TopicA", ack.ReasonCode)
	}
	w.c.Close()
	if m := in["/TopicA"].waitN(t, 2)[1]; m.Topic() != "/TopicA" || string(m.Payload()) != "gone" {
		t.Fatalf("will: got %q on %q", m.Payload(), m.Topic())
	}

	// The core topic's own name is not an MQTT first level.
	bad := dialRaw(t, f.addr, 5)
	bad.connect("slash-bad")
	bad.send(publishPacket(RootTopic+"/x", 1, 1, nil))
	if ack := bad.expect(packets.Puback); ack.ReasonCode != packets.ErrTopicNameInvalid.Code {
		t.Fatalf("PUBACK %#x for %s/x, want 0x90", ack.ReasonCode, RootTopic)
	}
}

// Topics starting with '$' are the server's [MQTT-4.7.2]: a client's
// PUBLISH there is refused under MQTT 5 (PUBACK/PUBREC 0x90, with a reason
// string only when it fits the client's Maximum Packet Size), acknowledged
// and dropped under 3.1.1, and never reaches `#` or `+/…` [MQTT-4.7.2-1].
func TestDollarTopics(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	all := f.connect("dollar-all")
	hash, plus := newInbox(), newInbox()
	wait(t, all.Subscribe("#", 1, hash.handler), "subscribe #")
	wait(t, all.Subscribe("+/x", 1, plus.handler), "subscribe +/x")

	v5 := dialRaw(t, f.addr, 5)
	v5.connect("dollar-v5")
	for i, topic := range []string{"$app/x", "$SYS/x", "$share/g/x"} {
		for qos := byte(1); qos <= 2; qos++ {
			id := uint16(10*i) + uint16(qos)
			v5.send(publishPacket(topic, qos, id, []byte("no")))
			typ := packets.Puback
			if qos == 2 {
				typ = packets.Pubrec
			}
			ack := v5.expect(typ)
			if ack.PacketID != id || ack.ReasonCode != packets.ErrTopicNameInvalid.Code || ack.Properties.ReasonString != reservedTopic {
				t.Fatalf("%s QoS %d: ack %d %#x %q, want 0x90 with %q", topic, qos, ack.PacketID, ack.ReasonCode, ack.Properties.ReasonString, reservedTopic)
			}
		}
	}

	// A client whose Maximum Packet Size leaves no room for the reason
	// string still gets the reason code [MQTT-3.4.2-3].
	small := dialRaw(t, f.addr, 5)
	cp := connectPacket("dollar-small")
	cp.Properties.MaximumPacketSize = 16
	small.send(cp)
	small.expect(packets.Connack)
	small.send(publishPacket("$app/x", 1, 1, []byte("no")))
	if ack := small.expect(packets.Puback); ack.ReasonCode != packets.ErrTopicNameInvalid.Code || ack.Properties.ReasonString != "" ||
		ack.FixedHeader.Remaining+2 > 16 {
		t.Fatalf("PUBACK %#x %q of %d bytes to a client taking 16", ack.ReasonCode, ack.Properties.ReasonString, ack.FixedHeader.Remaining+2)
	}

	// MQTT 3.1.1 (paho): acknowledged, dropped, the connection goes on.
	old := f.connect("dollar-v311")
	for qos := byte(0); qos <= 2; qos++ {
		wait(t, old.Publish("$app/x", qos, false, "no"), "3.1.1 publish to $app/x")
		wait(t, old.Publish("$SYS/x", qos, false, "no"), "3.1.1 publish to $SYS/x")
	}
	wait(t, old.Publish("app/x", 1, false, "yes"), "publish app/x")
	if m := hash.waitN(t, 1)[0]; m.Topic() != "app/x" {
		t.Fatalf("# got %q", m.Topic())
	}
	if m := plus.waitN(t, 1)[0]; m.Topic() != "app/x" {
		t.Fatalf("+/x got %q", m.Topic())
	}
	if !old.IsConnectionOpen() {
		t.Fatal("the 3.1.1 client was disconnected")
	}

	// A will on a '$' topic: refused at CONNECT under MQTT 5.
	w := dialRaw(t, f.addr, 5)
	pk := connectPacket("dollar-will")
	pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, "$app/will", []byte("w")
	w.send(pk)
	if ack := w.expect(packets.Connack); ack.ReasonCode != packets.ErrTopicNameInvalid.Code {
		t.Fatalf("CONNACK %#x for a will on $app/will, want 0x90", ack.ReasonCode)
	}
}

// mqtt.max-keep-alive: an MQTT 5 client asking for no keep alive, or a
// longer one, is told the cap as Server Keep Alive [MQTT-3.2.2-21] and is
// closed after one and a half of it in silence; a shorter one is kept.
func TestServerKeepAlive(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{MaxKeepAlive: 2})
	quiet := dialRaw(t, f.addr, 5)
	pk := connectPacket("ka-none")
	pk.Connect.Keepalive = 0
	quiet.send(pk)
	if ack := quiet.expect(packets.Connack); !ack.Properties.ServerKeepAliveFlag || ack.Properties.ServerKeepAlive != 2 {
		t.Fatalf("CONNACK Server Keep Alive %v %d, want 2", ack.Properties.ServerKeepAliveFlag, ack.Properties.ServerKeepAlive)
	}
	start := time.Now()
	quiet.expectClosed()
	if d := time.Since(start); d < 2*time.Second || d > 5*time.Second {
		t.Fatalf("closed after %v of silence, want 3 s", d)
	}
	short := dialRaw(t, f.addr, 5)
	pk = connectPacket("ka-short")
	pk.Connect.Keepalive = 1
	short.send(pk)
	if ack := short.expect(packets.Connack); ack.Properties.ServerKeepAliveFlag {
		t.Fatalf("CONNACK Server Keep Alive %d for a client asking for 1 s", ack.Properties.ServerKeepAlive)
	}
}

// Subscription options [MQTT-3.8.3]: No Local, Retain As Published and
// Retain Handling, as an MQTT 5 client sees them.
func TestSubscriptionOptions(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	a := dialRaw(t, f.addr, 5)
	a.connect("opt-a")
	b := dialRaw(t, f.addr, 5)
	b.connect("opt-b")
	sub := func(rc *rawClient, id uint16, s packets.Subscription) {
		t.Helper()
		s.Qos = 1
		rc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id,
			Filters: packets.Subscriptions{s}})
		rc.expect(packets.Suback)
	}

	// No Local: a's own publish does not come back; b's does.
	sub(a, 1, packets.Subscription{Filter: "opt/local", NoLocal: true})
	a.send(publishPacket("opt/local", 1, 1, []byte("mine")))
	a.expectAck(packets.Puback, 1)
	b.send(publishPacket("opt/local", 1, 1, []byte("theirs")))
	b.expectAck(packets.Puback, 1)
	if pk := a.expectPublish("opt/local"); string(pk.Payload) != "theirs" {
		t.Fatalf("No Local: got %q", pk.Payload)
	}

	// Retain As Published: the retain flag of a live delivery is kept only
	// with it [MQTT-3.3.1-12] [MQTT-3.3.1-13].
	sub(a, 2, packets.Subscription{Filter: "opt/rap", RetainAsPublished: true})
	sub(b, 2, packets.Subscription{Filter: "opt/rap"})
	c := dialRaw(t, f.addr, 5)
	c.connect("opt-c")
	ret := publishPacket("opt/rap", 1, 1, []byte("r"))
	ret.FixedHeader.Retain = true
	c.send(ret)
	c.expectAck(packets.Puback, 1)
	if !a.expectPublish("opt/rap").FixedHeader.Retain {
		t.Fatal("Retain As Published: retain flag cleared")
	}
	if b.expectPublish("opt/rap").FixedHeader.Retain {
		t.Fatal("without Retain As Published: retain flag kept")
	}

	// Retain Handling: 0 sends the retained message at every SUBSCRIBE, 1
	// only at a new subscription, 2 never [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
	d := dialRaw(t, f.addr, 5)
	d.connect("opt-d")
	// A subscription's time is kept in milliseconds: a message stored in
	// the millisecond before a SUBSCRIBE may be read as live after it.
	time.Sleep(20 * time.Millisecond)
	sub(d, 1, packets.Subscription{Filter: "opt/rap", RetainHandling: 2})
	d.expectNothing(300 * time.Millisecond)
	d.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 2,
		Filters: packets.Subscriptions{{Filter: "opt/rap"}}})
	d.expect(packets.Unsuback)
	sub(d, 3, packets.Subscription{Filter: "opt/rap", RetainHandling: 1})
	d.expectPublish("opt/rap")
	sub(d, 4, packets.Subscription{Filter: "opt/rap", RetainHandling: 1})
	d.expectNothing(300 * time.Millisecond)
	sub(d, 5, packets.Subscription{Filter: "opt/rap", RetainHandling: 0})
	d.expectPublish("opt/rap")
}

// Debian's python3-paho-mqtt (Eclipse Paho's Python client, MQTT 3.1.1 and
// 5) drives the same cases from another code base: request/response,
// expiry, /TopicA with a will, '$' topics. Skipped when it is missing,
// except under CI=true (test.sh installs it).
func TestPythonPaho(t *testing.T) {
	py := pythonWithPaho()
	if py == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no python3 with python3-paho-mqtt (test.sh installs it)")
		}
		t.Skip("no python3 with python3-paho-mqtt (apt-get install python3-paho-mqtt)")
	}
	f := startFerry(t, t.TempDir(), Config{})
	host, port, _ := net.SplitHostPort(f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "testdata/paho_interop.py", host, port).CombinedOutput()
	t.Logf("paho_interop.py:\n%s", out)
	if err != nil {
		t.Fatalf("paho_interop.py: %v", err)
	}
	if !strings.Contains(string(out), "all passed") {
		t.Fatal("paho_interop.py did not finish")
	}
}

// pythonWithPaho returns a Python 3 that imports paho.mqtt: the one on PATH,
// else Debian's own (a python3 of pyenv or a virtualenv on PATH does not see
// the Debian package's modules), or "".
func pythonWithPaho() string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if p, err := exec.LookPath(py); err == nil && exec.Command(p, "-c", "import paho.mqtt.client").Run() == nil {
			return p
		}
	}
	return ""
}
