package mqtt

import (
	"errors"
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The QoS 2 exchanges of a persistent session, half done when Ferry
// stops, go on after it starts again: they are kept in the session's
// record in the broker's log (QoS2In, QoS2Out). Each test speaks MQTT
// 3.1.1 and MQTT 5 with a raw client, packet by packet.

var qos2Versions = []struct {
	name    string
	version byte
}{{"3.1.1", 4}, {"5", 5}}

// connectPersistent connects rc with a session that outlives the
// connection (clean session 0; in MQTT 5, clean start 0 and a session
// expiry) and returns the CONNACK.
func (rc *rawClient) connectPersistent(id string) packets.Packet {
	rc.t.Helper()
	pk := connectPacket(id)
	pk.Connect.Clean = false
	if rc.version == 5 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 300, true
	}
	rc.send(pk)
	ack := rc.expect(packets.Connack)
	if ack.ReasonCode != 0 {
		rc.t.Fatalf("CONNACK %#x %q", ack.ReasonCode, ack.Properties.ReasonString)
	}
	return ack
}

// expectAck reads the next packet and fails unless it is of type typ, for
// packet id pid, with a success reason code.
func (rc *rawClient) expectAck(typ byte, pid uint16) packets.Packet {
	rc.t.Helper()
	pk := rc.expect(typ)
	if pk.PacketID != pid || pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		rc.t.Fatalf("got packet type %d for packet id %d with reason %#x %q, want it for %d and a success",
			typ, pk.PacketID, pk.ReasonCode, pk.Properties.ReasonString, pid)
	}
	return pk
}

func ackPacket(typ byte, pid uint16) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: pid}
}

// waitSession waits until the state Ferry keeps of a session's QoS 2
// exchanges (what a restart finds) satisfies cond.
func waitSession(t testing.TB, f *ferry, id, what string, cond func(sessionState) bool) {
	t.Helper()
	waitFor(t, what, func() bool {
		st, ok := f.mqtt.state.session(id)
		return ok && cond(st)
	})
}

// A QoS 2 PUBLISH stored and PUBREC'd, whose PUBREL had not come when
// Ferry stopped, is not stored again when the client resends it (DUP) after
// the restart: Ferry answers PUBREC, then PUBCOMP for the PUBREL
// [MQTT-4.3.3-10]. A subscriber gets the message once.
func TestQoS2ReceiveSurvivesRestart(t *testing.T) {
	for _, v := range qos2Versions {
		t.Run(v.name, func(t *testing.T) { testQoS2ReceiveSurvivesRestart(t, v.version) })
	}
}

func testQoS2ReceiveSurvivesRestart(t *testing.T, version byte) {
	f := startFerry(t, t.TempDir(), Config{})
	in := newInbox()
	watch := func(o *paho.ClientOptions) { o.SetDefaultPublishHandler(in.handler) }
	sub := f.connect("q2-watcher", persistent, watch)
	wait(t, sub.Subscribe("q2/#", 2, nil), "subscribe")

	const id, pid = "q2-sender", 7
	rc := dialRaw(t, f.addr, version)
	if ack := rc.connectPersistent(id); ack.SessionPresent {
		t.Fatal("CONNACK says session present for a new client id")
	}
	rc.send(publishPacket("q2/in", 2, pid, []byte("once")))
	rc.expectAck(packets.Pubrec, pid) // no PUBREL: the exchange stays half done
	waitSession(t, f, id, "packet id 7 kept as awaiting PUBREL", func(st sessionState) bool {
		return len(st.QoS2In) == 1 && st.QoS2In[0] == pid
	})
	// The subscriber has the message, and Ferry has its PUBREC: nothing of
	// that delivery is left to resend after the restart.
	in.waitN(t, 1)
	waitFor(t, "the delivery acknowledged", func() bool { return f.mqtt.Stats().InflightTotal == 0 })

	f.restart()
	f.connect("q2-watcher", persistent, watch)
	rc = dialRaw(t, f.addr, version)
	if ack := rc.connectPersistent(id); !ack.SessionPresent {
		t.Fatal("CONNACK after the restart says no session present")
	}
	dup := publishPacket("q2/in", 2, pid, []byte("once"))
	dup.FixedHeader.Dup = true // [MQTT-3.3.1-1]
	rc.send(dup)
	rc.expectAck(packets.Pubrec, pid)
	rc.send(ackPacket(packets.Pubrel, pid))
	// Ferry may have sent its PUBREC again on the reconnect, before the
	// resent PUBLISH was read: the PUBCOMP may come after a second PUBREC.
	for {
		pk, err := rc.recv()
		if err != nil {
			t.Fatalf("waiting for PUBCOMP: %v", err)
		}
		if pk.FixedHeader.Type == packets.Pubrec && pk.PacketID == pid && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			continue
		}
		if pk.FixedHeader.Type != packets.Pubcomp || pk.PacketID != pid || pk.ReasonCode != 0 {
			t.Fatalf("got packet type %d for packet id %d with reason %#x, want PUBCOMP for %d", pk.FixedHeader.Type, pk.PacketID, pk.ReasonCode, pid)
		}
		break
	}
	waitSession(t, f, id, "packet id 7 no longer awaiting PUBREL", func(st sessionState) bool { return len(st.QoS2In) == 0 })

	// A second message on the same topic comes after any copy of the
	// first: once it is in, a duplicate would have arrived.
	rc.send(publishPacket("q2/in", 2, pid+1, []byte("after")))
	rc.expectAck(packets.Pubrec, pid+1)
	rc.send(ackPacket(packets.Pubrel, pid+1))
	rc.expectAck(packets.Pubcomp, pid+1)
	got := in.waitN(t, 2)
	if string(got[0].Payload()) != "once" || string(got[1].Payload()) != "after" {
		t.Fatalf("the subscriber got %q then %q, want \"once\" then \"after\"", got[0].Payload(), got[1].Payload())
	}
	if n := countMessages(t, f.core, "q2"); n != 2 {
		t.Fatalf("%d messages stored, want 2", n)
	}
}

// A QoS 2 delivery the client PUBREC'd, whose PUBCOMP had not come when
// Ferry stopped, goes on with PUBREL after the restart, not with the
// PUBLISH again [MQTT-4.4.0-1]; the message is not delivered twice.
func TestQoS2DeliverySurvivesRestart(t *testing.T) {
	for _, v := range qos2Versions {
		t.Run(v.name, func(t *testing.T) { testQoS2DeliverySurvivesRestart(t, v.version) })
	}
}

func testQoS2DeliverySurvivesRestart(t *testing.T, version byte) {
	f := startFerry(t, t.TempDir(), Config{})
	const id = "q2-receiver"
	rc := dialRaw(t, f.addr, version)
	rc.connectPersistent(id)
	subscribe := subscribePacket(1, "q2/out")
	subscribe.Filters[0].Qos = 2
	rc.send(subscribe)
	if ack := rc.expectAck(packets.Suback, 1); len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != 2 {
		t.Fatalf("SUBACK %v, want QoS 2 granted", ack.ReasonCodes)
	}

	pub := f.connect("q2-publisher")
	wait(t, pub.Publish("q2/out", 2, false, "once"), "publish")
	pk := rc.expect(packets.Publish)
	if pk.FixedHeader.Qos != 2 || pk.TopicName != "q2/out" || string(pk.Payload) != "once" {
		t.Fatalf("got PUBLISH QoS %d %s %q, want QoS 2 q2/out \"once\"", pk.FixedHeader.Qos, pk.TopicName, pk.Payload)
	}
	pid := pk.PacketID
	rc.send(ackPacket(packets.Pubrec, pid))
	rc.expectAck(packets.Pubrel, pid) // no PUBCOMP: the exchange stays half done
	waitSession(t, f, id, "the delivery kept as awaiting PUBCOMP", func(st sessionState) bool {
		return len(st.QoS2Out) == 1 && st.QoS2Out[0] == pid
	})

	f.restart()
	rc = dialRaw(t, f.addr, version)
	if ack := rc.connectPersistent(id); !ack.SessionPresent {
		t.Fatal("CONNACK after the restart says no session present")
	}
	rc.expectAck(packets.Pubrel, pid) // [MQTT-4.4.0-1]
	rc.send(ackPacket(packets.Pubcomp, pid))
	waitSession(t, f, id, "the delivery no longer awaiting PUBCOMP", func(st sessionState) bool { return len(st.QoS2Out) == 0 })

	// A second message comes after any copy of the first: the next PUBLISH
	// must be it.
	pub = f.connect("q2-publisher")
	wait(t, pub.Publish("q2/out", 2, false, "after"), "publish")
	pk = rc.expect(packets.Publish)
	if string(pk.Payload) != "after" {
		t.Fatalf("got PUBLISH %q (dup %v) after the restart, want \"after\": the delivery was made twice", pk.Payload, pk.FixedHeader.Dup)
	}
	rc.send(ackPacket(packets.Pubrec, pk.PacketID))
	rc.expectAck(packets.Pubrel, pk.PacketID)
	rc.send(ackPacket(packets.Pubcomp, pk.PacketID))
	// And nothing more comes for a while: not "once", nor "after" again.
	if pk, err := rc.recvWithin(500 * time.Millisecond); err == nil {
		t.Fatalf("got packet type %d (%q) after the exchanges ended, want none", pk.FixedHeader.Type, pk.Payload)
	} else if ne := (net.Error)(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("the connection ended: %v", err)
	}
}
