package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ferrymq/ferry/core"
)

// rawClient speaks MQTT packet by packet over a TCP connection, encoding
// and decoding with the engine's packet codec, so that a test can send what
// a well-behaved client would not and see every packet the server answers.
type rawClient struct {
	t       testing.TB
	c       net.Conn
	r       *bufio.Reader
	version byte
}

func dialRaw(t testing.TB, addr string, version byte) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c), version: version}
}

func (rc *rawClient) send(pk packets.Packet) {
	rc.t.Helper()
	var buf bytes.Buffer
	encodeRaw(rc.t, &buf, pk, rc.version)
	rc.write(buf.Bytes())
}

// encodeRaw appends pk, as a client of version sends it, to buf.
func encodeRaw(t testing.TB, buf *bytes.Buffer, pk packets.Packet, version byte) {
	t.Helper()
	pk.ProtocolVersion = version
	pk.Mods.AllowResponseInfo = true // or the codec leaves out Response Topic and Correlation Data
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(buf)
	case packets.Publish:
		err = pk.PublishEncode(buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(buf)
	case packets.Puback:
		err = pk.PubackEncode(buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(buf)
	case packets.Pubrel:
		pk.FixedHeader.Qos = 1 // its fixed header's flags are 0010 [MQTT-3.6.1-1]
		err = pk.PubrelEncode(buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(buf)
	default:
		t.Fatalf("rawClient cannot send packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (rc *rawClient) write(b []byte) {
	rc.t.Helper()
	_ = rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

// recv reads the next packet; an error is the connection's end (io.EOF
// when the server closed it).
func (rc *rawClient) recv() (packets.Packet, error) {
	return rc.recvWithin(10 * time.Second)
}

// recvWithin reads the next packet, waiting at most d for it: a timeout
// (a net.Error) leaves the connection usable.
func (rc *rawClient) recvWithin(d time.Duration) (packets.Packet, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(d))
	var pk packets.Packet
	b, err := rc.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(rc.r)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = rc.version
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	return pk, err
}

func (rc *rawClient) expect(typ byte) packets.Packet {
	rc.t.Helper()
	pk, err := rc.recv()
	if err != nil {
		rc.t.Fatalf("waiting for packet type %d: %v", typ, err)
	}
	if pk.FixedHeader.Type != typ {
		rc.t.Fatalf("got packet type %d (reason %#x %q), want %d", pk.FixedHeader.Type, pk.ReasonCode, pk.Properties.ReasonString, typ)
	}
	return pk
}

// expectClosed reads until the server closes the connection, failing on
// any packet.
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	pk, err := rc.recv()
	if err == nil {
		rc.t.Fatalf("got packet type %d (reason %#x), want the connection closed", pk.FixedHeader.Type, pk.ReasonCode)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		rc.t.Fatal("the connection is still open")
	}
}

func connectPacket(id string) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: true, Keepalive: 30}}
}

func (rc *rawClient) connect(id string) packets.Packet {
	rc.t.Helper()
	pk := connectPacket(id)
	pk.ProtocolVersion = rc.version
	rc.send(pk)
	ack := rc.expect(packets.Connack)
	if ack.ReasonCode != 0 {
		rc.t.Fatalf("CONNACK %#x %q", ack.ReasonCode, ack.Properties.ReasonString)
	}
	return ack
}

func publishPacket(topic string, qos byte, id uint16, payload []byte) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, TopicName: topic, PacketID: id, Payload: payload}
}

func subscribePacket(id uint16, filter string) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id,
		Filters: packets.Subscriptions{{Filter: filter, Qos: 1}}}
}

// MQTT 5 CONNACK says the limits a client must keep to: maximum packet
// size, receive maximum, topic alias maximum.
func TestConnackSaysTheLimits(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{MaxPacketSize: 100_000, MaxInflight: 77, MaxTopicAlias: 5})
	ack := dialRaw(t, f.addr, 5).connect("limits")
	p := ack.Properties
	if p.MaximumPacketSize != 100_000 || p.ReceiveMaximum != 77 || p.TopicAliasMaximum != 5 {
		t.Fatalf("CONNACK properties: maximum packet size %d, receive maximum %d, topic alias maximum %d; want 100000, 77, 5",
			p.MaximumPacketSize, p.ReceiveMaximum, p.TopicAliasMaximum)
	}
	// The defaults: 10 topic aliases, a maximum packet size of 4 MiB.
	g := startFerry(t, t.TempDir(), Config{})
	if p := dialRaw(t, g.addr, 5).connect("defaults").Properties; p.MaximumPacketSize != 4<<20 || p.TopicAliasMaximum != 10 || p.ReceiveMaximum != 1024 {
		t.Fatalf("default CONNACK properties %+v", p)
	}
	// A topic alias past the maximum is a protocol error [MQTT-3.3.2-9].
	rc := dialRaw(t, f.addr, 5)
	rc.connect("alias")
	pk := publishPacket("alias/x", 1, 1, []byte("x"))
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 6, true
	rc.send(pk)
	if d := rc.expect(packets.Disconnect); d.ReasonCode != packets.ErrTopicAliasInvalid.Code {
		t.Fatalf("DISCONNECT %#x, want 0x94 (topic alias invalid)", d.ReasonCode)
	}
}

// A packet over the maximum size gets DISCONNECT 0x95 under MQTT 5, a
// closed connection under 3.1.1 (TestLimits), and is not stored.
func TestOversizedPacketGetsDisconnect0x95(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{MaxPacketSize: 1024})
	rc := dialRaw(t, f.addr, 5)
	rc.connect("big")
	rc.send(publishPacket("big/one", 1, 1, bytes.Repeat([]byte("x"), 2000)))
	d := rc.expect(packets.Disconnect)
	if d.ReasonCode != packets.ErrPacketTooLarge.Code || !strings.Contains(d.Properties.ReasonString, "mqtt.max-packet-size") {
		t.Fatalf("DISCONNECT %#x %q, want 0x95 naming mqtt.max-packet-size", d.ReasonCode, d.Properties.ReasonString)
	}
	rc.expectClosed()
	if f.core.HasTopic("big") {
		t.Fatal("an oversized packet was stored")
	}
	if n := f.mqtt.hits[limitPacketSize].Load(); n != 1 {
		t.Fatalf("%d hits of mqtt.max-packet-size counted, want 1", n)
	}
	// A packet of exactly the maximum passes.
	rc = dialRaw(t, f.addr, 5)
	rc.connect("fits")
	var sized bytes.Buffer
	pk := publishPacket("fits/x", 1, 1, nil)
	pk.ProtocolVersion = 5
	_ = pk.PublishEncode(&sized)
	pk.Payload = bytes.Repeat([]byte("y"), 1024-sized.Len()-1) // the remaining length takes a second byte
	rc.send(pk)
	if a := rc.expect(packets.Puback); a.ReasonCode != 0 {
		t.Fatalf("PUBACK %#x for a packet of the maximum size", a.ReasonCode)
	}
}

// A CONNECT over the pre-CONNECT cap is refused from its header: the
// server answers before the body is sent, so it never waited for it.
func TestOversizedConnectIsRefusedUnread(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	for _, v := range []byte{5, 4} {
		rc := dialRaw(t, f.addr, v)
		// CONNECT declaring 4 MiB, then its protocol name and level only.
		rc.write([]byte{0x10, 0x80, 0x80, 0x80, 0x02, 0, 4, 'M', 'Q', 'T', 'T', v})
		if v == 5 {
			ack := rc.expect(packets.Connack)
			if ack.ReasonCode != packets.ErrPacketTooLarge.Code || !strings.Contains(ack.Properties.ReasonString, "mqtt.max-connect-size") {
				t.Fatalf("CONNACK %#x %q, want 0x95 naming mqtt.max-connect-size", ack.ReasonCode, ack.Properties.ReasonString)
			}
		}
		rc.expectClosed()
	}
	if n := f.mqtt.hits[limitConnectSize].Load(); n != 2 {
		t.Fatalf("%d hits of mqtt.max-connect-size counted, want 2", n)
	}
	// A first packet that is not a CONNECT ends the connection [MQTT-3.1.0-1].
	rc := dialRaw(t, f.addr, 5)
	rc.write([]byte{0xc0, 0}) // PINGREQ
	rc.expectClosed()
	dialRaw(t, f.addr, 5).connect("still-fine")
}

// A connection that does not send its CONNECT in time is closed; one that
// does is then held to its keep-alive, not to the connect timeout.
func TestConnectTimeout(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{ConnectTimeout: 300 * time.Millisecond})
	c := f.connect("in-time") // before the silent ones: open longer than they are
	in := newInbox()
	wait(t, c.Subscribe("late/x", 1, in.handler), "subscribe")
	silent := dialRaw(t, f.addr, 4)
	partial := dialRaw(t, f.addr, 4)
	partial.write([]byte{0x10, 20, 0, 4, 'M'}) // a CONNECT begun, never finished
	silent.expectClosed()
	partial.expectClosed()
	if n := f.mqtt.hits[limitConnectTimeout].Load(); n != 2 {
		t.Fatalf("%d connect timeouts counted, want 2", n)
	}
	wait(t, c.Publish("late/x", 1, false, "still here"), "publish after the connect timeout")
	in.waitN(t, 1)
}

// Each listener keeps at most mqtt.max-connections open, logged in or not;
// one more is answered "server busy" (5) or "server unavailable" (3.1.1),
// and counted.
func TestMaxConnectionsPerListener(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{MaxConnections: 2})
	idle := dialRaw(t, f.addr, 4) // never logs in, still counts
	f.connect("a")
	waitFor(t, "two connections open", func() bool { return f.mqtt.listeners[0].open.Load() == 2 })
	v5 := dialRaw(t, f.addr, 5)
	v5.send(func() packets.Packet { p := connectPacket("b"); p.ProtocolVersion = 5; return p }())
	if ack := v5.expect(packets.Connack); ack.ReasonCode != packets.ErrServerBusy.Code || !strings.Contains(ack.Properties.ReasonString, "mqtt.max-connections") {
		t.Fatalf("CONNACK %#x %q, want 0x89 (server busy) naming mqtt.max-connections", ack.ReasonCode, ack.Properties.ReasonString)
	}
	o := paho.NewClientOptions().AddBroker("tcp://" + f.addr).SetClientID("c").SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() == nil || !strings.Contains(strings.ToLower(tok.Error().Error()), "unavailable") {
		t.Fatalf("a connection past mqtt.max-connections: %v, want refused as server unavailable", tok.Error())
	}
	if n := f.mqtt.listeners[0].refused.Load(); n != 2 {
		t.Fatalf("%d refused connections counted, want 2", n)
	}
	idle.c.Close()
	waitFor(t, "a slot free", func() bool { return f.mqtt.listeners[0].open.Load() == 1 })
	f.connect("d")
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Topic names and filters over mqtt.max-topic-levels or
// mqtt.max-topic-length are refused before any work on them: a filter of
// 32,767 levels gets SUBACK 0x8F with the reason, never reaches the
// subscription index, and the connection goes on.
func TestTopicLimits(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	deep := strings.Repeat("a/", 32766) + "a" // 32,767 levels, 65,533 bytes
	rc := dialRaw(t, f.addr, 5)
	rc.connect("deep")
	subs := atomic.LoadInt64(&f.mqtt.mq.Info.Subscriptions)
	start := time.Now()
	rc.send(subscribePacket(1, deep))
	ack := rc.expect(packets.Suback)
	t.Logf("SUBACK for a filter of 32,767 levels after %v", time.Since(start))
	if len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != packets.ErrTopicFilterInvalid.Code ||
		!strings.Contains(ack.Properties.ReasonString, "mqtt.max-topic-length") {
		t.Fatalf("SUBACK %v %q, want 0x8F naming mqtt.max-topic-length", ack.ReasonCodes, ack.Properties.ReasonString)
	}
	if n := atomic.LoadInt64(&f.mqtt.mq.Info.Subscriptions); n != subs {
		t.Fatalf("the refused filter reached the subscription index (%d subscriptions, want %d)", n, subs)
	}
	levels := strings.Repeat("b/", 128) + "b" // 129 levels, short
	rc.send(subscribePacket(2, levels))
	if ack := rc.expect(packets.Suback); ack.ReasonCodes[0] != 0x8F || !strings.Contains(ack.Properties.ReasonString, "mqtt.max-topic-levels") {
		t.Fatalf("SUBACK %v %q, want 0x8F naming mqtt.max-topic-levels", ack.ReasonCodes, ack.Properties.ReasonString)
	}
	rc.send(publishPacket(levels, 1, 3, []byte("x")))
	if a := rc.expect(packets.Puback); a.ReasonCode != packets.ErrTopicNameInvalid.Code || !strings.Contains(a.Properties.ReasonString, "mqtt.max-topic-levels") {
		t.Fatalf("PUBACK %#x %q, want 0x90 naming mqtt.max-topic-levels", a.ReasonCode, a.Properties.ReasonString)
	}
	rc.send(publishPacket(levels, 2, 4, []byte("x")))
	if a := rc.expect(packets.Pubrec); a.ReasonCode != packets.ErrTopicNameInvalid.Code {
		t.Fatalf("PUBREC %#x, want 0x90", a.ReasonCode)
	}
	rc.send(publishPacket(levels, 0, 0, []byte("x"))) // dropped: QoS 0 has no answer
	// The connection goes on: 128 levels are fine, and so is delivery.
	ok := strings.Repeat("c/", 127) + "c"
	rc.send(subscribePacket(5, ok))
	if ack := rc.expect(packets.Suback); ack.ReasonCodes[0] != 1 || ack.Properties.ReasonString != "" {
		t.Fatalf("SUBACK %v %q for 128 levels, want QoS 1", ack.ReasonCodes, ack.Properties.ReasonString)
	}
	rc.send(publishPacket(ok, 1, 6, []byte("hello")))
	for got := 0; got < 2; {
		pk, err := rc.recv()
		if err != nil {
			t.Fatal(err)
		}
		switch pk.FixedHeader.Type {
		case packets.Puback:
			if pk.PacketID != 6 || pk.ReasonCode != 0 {
				t.Fatalf("PUBACK %d %#x", pk.PacketID, pk.ReasonCode)
			}
			got++
		case packets.Publish:
			if pk.TopicName != ok || string(pk.Payload) != "hello" {
				t.Fatalf("delivered %q %q", pk.TopicName, pk.Payload)
			}
			got++
		}
	}
	if f.core.HasTopic("b") {
		t.Fatal("a publish over the topic limits was stored")
	}

	// 3.1.1: SUBACK 0x80; a publish over the limits closes the connection.
	c := f.connect("v3")
	tok := c.Subscribe(levels, 1, nil)
	wait(t, tok, "subscribe")
	if code := tok.(*paho.SubscribeToken).Result()[levels]; code != 0x80 {
		t.Fatalf("3.1.1 SUBACK %#x, want 0x80", code)
	}
	c.Publish(levels, 1, false, "x").WaitTimeout(2 * time.Second)
	waitFor(t, "the 3.1.1 connection closed", func() bool { return !c.IsConnectionOpen() })

	// With the length allowed up to the protocol's maximum, the levels
	// refuse the same filter.
	g := startFerry(t, t.TempDir(), Config{MaxTopicLength: 65535})
	lv := dialRaw(t, g.addr, 5)
	lv.connect("levels")
	lv.send(subscribePacket(1, deep))
	if ack := lv.expect(packets.Suback); ack.ReasonCodes[0] != 0x8F || !strings.Contains(ack.Properties.ReasonString, "32767 levels") {
		t.Fatalf("SUBACK %v %q, want 0x8F naming the 32767 levels", ack.ReasonCodes, ack.Properties.ReasonString)
	}

	// A will topic over the limits: CONNACK 0x90 (5).
	w := dialRaw(t, f.addr, 5)
	pk := connectPacket("will")
	pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, levels, []byte("gone")
	w.send(pk)
	if ack := w.expect(packets.Connack); ack.ReasonCode != packets.ErrTopicNameInvalid.Code {
		t.Fatalf("CONNACK %#x for a will topic over the limits, want 0x90", ack.ReasonCode)
	}
}

// ListenerHealth is nil while the listeners accept, and names a closed one.
func TestListenerHealth(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{WSAddr: "127.0.0.1:0"})
	if err := f.mqtt.ListenerHealth(); err != nil {
		t.Fatal(err)
	}
	f.mqtt.mu.Lock()
	ws := f.mqtt.listeners[1]
	f.mqtt.mu.Unlock()
	ws.Close()
	waitFor(t, "the closed listener reported", func() bool {
		err := f.mqtt.ListenerHealth()
		return err != nil && strings.Contains(err.Error(), "ws listener")
	})
}

// readConnect never trusts the length it read: whatever the bytes, it
// returns at most the cap, and what it returns is one whole packet.
func FuzzReadConnect(f *testing.F) {
	f.Add([]byte{0x10, 0x80, 0x80, 0x80, 0x02, 0, 4, 'M', 'Q', 'T', 'T', 5}, 1024)
	f.Add([]byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 0}, 1024)
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f}, 1<<20)
	f.Add([]byte{0x30, 0}, 10)
	f.Fuzz(func(t *testing.T, b []byte, limit int) {
		limit = 2 + limit&0xffff
		out, h, err := readConnect(bytes.NewReader(b), limit)
		if err != nil {
			if out != nil {
				t.Fatal("bytes returned with an error")
			}
			return
		}
		if len(out) > limit || len(out) != h.size || !bytes.Equal(out, b[:len(out)]) {
			t.Fatalf("returned %d bytes (declared %d, cap %d)", len(out), h.size, limit)
		}
	})
}

// limitConn's framing follows any split of a stream of packets, and stops
// at the first packet over the maximum, handing over exactly the packets
// before it.
func FuzzLimitConnFraming(f *testing.F) {
	f.Add([]byte{3, 10, 200, 5, 1}, 64, uint8(3))
	f.Add([]byte{0, 127, 128, 1}, 200, uint8(1))
	f.Fuzz(func(t *testing.T, sizes []byte, max int, split uint8) {
		max = 2 + max&0xfff
		var stream []byte
		okBytes, over := 0, false
		for _, s := range sizes {
			rem := int(s) * 3
			var pk bytes.Buffer
			fh := packets.FixedHeader{Type: packets.Publish, Remaining: rem}
			fh.Encode(&pk)
			pk.Write(make([]byte, rem))
			if !over && pk.Len() > max {
				over = true
			}
			if !over {
				okBytes += pk.Len()
			}
			stream = append(stream, pk.Bytes()...)
		}
		server, client := net.Pipe()
		defer server.Close()
		go func() {
			defer client.Close()
			for i := 0; i < len(stream); {
				n := min(len(stream)-i, 1+int(split))
				if _, err := client.Write(stream[i : i+n]); err != nil {
					return
				}
				i += n
			}
		}()
		lc := &limitConn{Conn: server, max: max, onHit: func(string, error) {}}
		got, err := io.ReadAll(lc)
		if over != (err != nil) || (over && hit(err) != limitPacketSize) {
			t.Fatalf("over %v, err %v", over, err)
		}
		// Over, what is handed over may end with the first bytes of the
		// oversized packet's header, read with the packets before it.
		if len(got) < okBytes || (over && len(got) > okBytes+4) || !bytes.Equal(got, stream[:len(got)]) {
			t.Fatalf("handed over %d bytes, want %d (over %v)", len(got), okBytes, over)
		}
	})
}

// Over WebSocket the same limits hold: a connection upgraded and silent is
// closed after the connect timeout, an oversized CONNECT is refused from
// its header with CONNACK 0x95.
func TestWebSocketConnectLimits(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{WSAddr: "127.0.0.1:0", ConnectTimeout: 300 * time.Millisecond})
	dial := func() *websocket.Conn {
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
		c, _, err := d.Dial("ws://"+f.mqtt.Addr("ws")+"/mqtt", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	silent := dial()
	if _, _, err := silent.ReadMessage(); err == nil {
		t.Fatal("a message on a connection that sent nothing")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a silent WebSocket connection was not closed")
	}
	big := dial()
	if err := big.WriteMessage(websocket.BinaryMessage, []byte{0x10, 0x80, 0x80, 0x80, 0x02, 0, 4, 'M', 'Q', 'T', 'T', 5}); err != nil {
		t.Fatal(err)
	}
	_, b, err := big.ReadMessage()
	if err != nil || len(b) < 4 || b[0] != 0x20 || b[3] != 0x95 {
		t.Fatalf("answer to an oversized CONNECT: %x, %v; want CONNACK 0x95", b, err)
	}
	if a, b := f.mqtt.hits[limitConnectTimeout].Load(), f.mqtt.hits[limitConnectSize].Load(); a != 1 || b != 1 {
		t.Fatalf("hits: connect timeout %d, connect size %d; want 1 each", a, b)
	}
}

// Out of file descriptors, the accept loop backs off and retries instead of
// ending: ListenerHealth reports the listener down while accept fails with
// EMFILE, and nil again once it accepts. The test leaves this process one
// free descriptor, which the client's socket takes.
func TestListenerHealthThroughEMFILE(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	// The broker writes its state records at start; once a message stored
	// after them is readable, the store has indexed them and holds every
	// file it opens for them, so none takes the descriptor left free below.
	res, err := f.core.Publish(context.Background(), &core.Message{Topic: "warm", Body: []byte("x")}, core.PublishOptions{Queue: core.QueueAuto})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := f.core.Read(context.Background(), "warm", res.QueueID, res.QueueOffset, core.ReadOptions{Max: 1, Wait: 10 * time.Second}); err != nil || len(r.Messages) != 1 {
		t.Fatalf("read back a stored message: %v, %v", r.Messages, err)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	saved := rl
	restore := func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved) }
	defer restore()
	highest := 0
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			highest = max(highest, n)
		}
	}
	rl.Cur = uint64(highest) + 8
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	var fillers []*os.File
	defer func() {
		for _, fl := range fillers {
			fl.Close()
		}
	}()
	for {
		fl, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		fillers = append(fillers, fl)
	}
	// One descriptor free: the client's. Another goroutine of this
	// process (the broker's own) can take it first; then one more is freed.
	var c net.Conn
	for tries := 1; ; tries++ {
		fillers[len(fillers)-1].Close()
		fillers = fillers[:len(fillers)-1]
		if c, err = net.DialTimeout("tcp", f.addr, 5*time.Second); err == nil {
			break
		}
		if !errors.Is(err, syscall.EMFILE) || tries == 4 {
			t.Fatal(err)
		}
	}
	defer c.Close()
	waitFor(t, "the listener reported down", func() bool {
		err := f.mqtt.ListenerHealth()
		return err != nil && strings.Contains(err.Error(), "too many open files")
	})
	for _, fl := range fillers {
		fl.Close()
	}
	fillers = nil
	restore()
	// A new connection once descriptors are back: the listener accepts it.
	// The one that met EMFILE usually waits in the backlog and is accepted
	// too, but in about 1 run in 100 under -race the retried accept found
	// the backlog empty and waited (accept4 said EAGAIN; stacks showed the
	// loop in IO wait after its one counted error), so the new connection
	// is the one this test needs: a listener that accepts again.
	fresh, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	waitFor(t, "the listener accepting again", func() bool { return f.mqtt.ListenerHealth() == nil })
	if n := f.mqtt.listeners[0].acceptErrors.Load(); n < 1 {
		t.Fatalf("%d accept errors counted", n)
	}
	rc := &rawClient{t: t, c: fresh, r: bufio.NewReader(fresh), version: 4}
	rc.connect("after-emfile")
}

// A client nobody here wrote reads the limits from CONNACK: mosquitto_pub
// over MQTT 5 will not send a message over the advertised maximum packet
// size, and sends one under it.
func TestMosquittoHonoursTheMaximumPacketSize(t *testing.T) {
	pub := needTool(t, "mosquitto_pub", "mosquitto-clients")
	f := startFerry(t, t.TempDir(), Config{MaxPacketSize: 1024})
	host, port, _ := net.SplitHostPort(f.addr)
	out, err := exec.Command(pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-t", "sized/x", "-d", "-m", strings.Repeat("x", 2000)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "received CONNACK") || strings.Contains(string(out), "sending PUBLISH") {
		t.Fatalf("mosquitto_pub of 2000 bytes to a maximum packet size of 1024: %v\n%s\nwant it connected and sent nothing", err, out)
	}
	if out, err := exec.Command(pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-t", "sized/x", "-m", "small").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub of 5 bytes: %v\n%s", err, out)
	}
	waitFor(t, "the small message stored", func() bool { return countMessages(t, f.core, "sized") == 1 })
	if n := f.mqtt.hits[limitPacketSize].Load(); n != 0 {
		t.Fatalf("%d oversized packets reached Ferry, want none sent", n)
	}
}
