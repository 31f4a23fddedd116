// Package nativetest serves the native protocol over a core, with a
// NameServer the broker registers with, for the tests of other front-ends
// and bridges that check a native client sees what they store.
package nativetest

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/frontends/native"
	"github.com/ferrymq/ferry/namesrv"
)

// Serve serves the native protocol over b as broker-a, registered with a
// NameServer of its own every 100 ms, until the test ends, and returns the
// NameServer's address: what a client's WithNameServers takes.
func Serve(t testing.TB, b *core.Broker, log *slog.Logger) string {
	t.Helper()
	nsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ns := namesrv.New(namesrv.Options{Logger: log})
	go ns.Serve(nsLn)
	br := StartBroker(t, b, "broker-a", []string{nsLn.Addr().String()}, native.Options{Logger: log}, nil)
	t.Cleanup(func() {
		br.Stop()
		ns.Close()
	})
	return nsLn.Addr().String()
}

// Broker is a native front-end serving a core, registered with NameServers.
type Broker struct {
	Server *native.Server
	Addr   string // where it listens
	stop   func()
	once   sync.Once
}

// Stop stops the registrar and the front-end (not the core); later calls
// do nothing.
func (b *Broker) Stop() { b.once.Do(b.stop) }

// StartBroker serves the native protocol over b on 127.0.0.1:0 (with TLS
// when conf is not nil), registered as name with nameServers every 100 ms,
// until Stop.
func StartBroker(t testing.TB, b *core.Broker, name string, nameServers []string, opts native.Options, conf *tls.Config) *Broker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	fe := native.New(b, opts)
	reg, err := cluster.NewRegistrar(b, cluster.RegistrarOptions{Identity: cluster.Identity{Name: name},
		NameServers: nameServers, Interval: 100 * time.Millisecond, Endpoint: fe, Logger: opts.Logger})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	reg.Start()
	served := make(chan struct{})
	go func() {
		defer close(served)
		fe.Serve(ln)
	}()
	return &Broker{Server: fe, Addr: ln.Addr().String(), stop: func() {
		reg.Close()
		fe.Close()
		<-served
	}}
}
