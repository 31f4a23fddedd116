// Package nativetest serves the native protocol over a core, with a
// NameServer the broker registers with, for the tests of other front-ends
// and bridges that check a native client sees what they store.
package nativetest

import (
	"log/slog"
	"net"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fe := native.New(b, native.Options{Logger: log})
	reg, err := cluster.NewRegistrar(b, cluster.RegistrarOptions{Identity: cluster.Identity{Name: "broker-a"},
		NameServers: []string{nsLn.Addr().String()}, Interval: 100 * time.Millisecond, Endpoint: fe, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	reg.Start()
	served := make(chan struct{})
	go func() {
		defer close(served)
		fe.Serve(ln)
	}()
	t.Cleanup(func() {
		reg.Close()
		fe.Close()
		<-served
		ns.Close()
	})
	return nsLn.Addr().String()
}
