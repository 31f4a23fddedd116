package client

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/ferrymq/ferry/internal/tlstest"
)

// TestTLS: brokers whose native listener serves TLS are reached with
// WithTLS (the NameServer stays plain TCP); a client without it fails.
func TestTLS(t *testing.T) {
	certFile, keyFile, roots := tlstest.SelfSigned(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	f := startFerryWith(t, &testFerry{tls: &tls.Config{Certificates: []tls.Certificate{cert}}})
	f.createTopic(t, "orders", 2)
	ctx := t.Context()

	secure := WithTLS(&tls.Config{RootCAs: roots})
	p := f.newProducer(t, secure)
	for range 5 {
		if _, err := p.Send(ctx, &Message{Topic: "orders", Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	var r recorder
	f.startConsumer(t, "cg", "orders", "*", r.handle, secure)
	eventually(t, 10*time.Second, func() bool { return r.len() == 5 }, "the 5 messages over TLS")

	plain := f.newProducer(t, WithRetries(0))
	if _, err := plain.Send(ctx, &Message{Topic: "orders", Body: []byte("x")}); err == nil {
		t.Fatal("a plain TCP producer sent to a TLS broker")
	}
	untrusting := f.newProducer(t, WithTLS(nil), WithRetries(0))
	if _, err := untrusting.Send(ctx, &Message{Topic: "orders", Body: []byte("x")}); err == nil || errors.Is(err, ErrClosed) {
		t.Fatalf("a producer that does not trust the broker's certificate: %v", err)
	}
}
