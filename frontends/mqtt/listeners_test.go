package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ferry test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// One message crosses all three listeners: published over TLS, received
// over WebSocket and over TCP.
func TestTLSAndWebSocketListeners(t *testing.T) {
	dir := t.TempDir()
	cert, key, pool := selfSigned(t, dir)
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
