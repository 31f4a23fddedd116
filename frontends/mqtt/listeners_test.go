package mqtt

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferrymq/ferry/internal/tlstest"
)

// One message crosses all three listeners: published over TLS, received
// over WebSocket and over TCP.
func TestTLSAndWebSocketListeners(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := tlstest.SelfSigned(t, dir)
	f := startFerry(t, t.TempDir(), Config{WSAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLSCertFile: cert, TLSKeyFile: key})

	wsIn, tcpIn := newInbox(), newInbox()
	ws := f.connect("ws", func(o *paho.ClientOptions) {
		o.Servers = nil
		o.AddBroker("ws://" + f.mqtt.Addr("ws") + "/mqtt")
	})
	wait(t, ws.Subscribe("x/#", 1, wsIn.handler), "subscribe over WebSocket")
	tcp := f.connect("tcp")
	wait(t, tcp.Subscribe("x/#", 1, tcpIn.handler), "subscribe over TCP")
	tl := f.connect("tls", func(o *paho.ClientOptions) {
		o.Servers = nil
		o.AddBroker("ssl://" + f.mqtt.Addr("tls"))
		o.SetTLSConfig(&tls.Config{RootCAs: pool})
	})
	wait(t, tl.Publish("x/y", 1, false, strings.Repeat("z", 100_000)), "publish over TLS")
	for _, in := range []*inbox{wsIn, tcpIn} {
		if m := in.waitN(t, 1)[0]; len(m.Payload()) != 100_000 {
			t.Fatalf("got %d bytes", len(m.Payload()))
		}
	}
}

// Limits: a packet over the maximum size ends the connection and stores
// nothing; connections past the maximum are refused.
func TestLimits(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{MaxPacketSize: 1024, MaxConnections: 2})
	a := f.connect("a")
	a.Publish("big/one", 1, false, strings.Repeat("x", 2000)).WaitTimeout(2 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for a.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a.IsConnectionOpen() {
		t.Fatal("a packet over mqtt.max-packet-size left the connection open")
	}
	if f.core.HasTopic("big") {
		t.Fatal("an oversized packet was stored")
	}
	for f.mqtt.Stats().Connections > 0 && time.Now().Before(deadline) { // the server's side of a's end
		time.Sleep(10 * time.Millisecond)
	}
	f.connect("b")
	f.connect("c")
	o := paho.NewClientOptions().AddBroker("tcp://" + f.addr).SetClientID("d").SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	d := paho.NewClient(o)
	if tok := d.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		d.Disconnect(0)
		t.Fatal("a connection past mqtt.max-connections was accepted")
	}
}
