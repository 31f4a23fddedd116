package mqtt

import (
	"errors"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferrymq/ferry/core/plugin"
)

// Operators see the connected clients and disconnect one; it may come
// back.
func TestClientsAndDisconnect(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	var p plugin.Plugin = frontend{f.mqtt}
	lister, ok := p.(plugin.ClientLister)
	if !ok {
		t.Fatal("the mqtt plug-in is no plugin.ClientLister")
	}
	lost := make(chan error, 1)
	c := f.connect("dev-1", func(o *paho.ClientOptions) {
		o.SetUsername("alice").SetProtocolVersion(4)
		o.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	})
	wait(t, c.Subscribe("a/#", 1, nil), "subscribe")
	wait(t, c.Subscribe("b/+", 0, nil), "subscribe")
	before := time.Now()
	var got []plugin.Client
	waitFor(t, "dev-1 listed with its two subscriptions", func() bool {
		got = lister.Clients()
		return len(got) == 1 && got[0].Subscriptions == 2
	})
	cl := got[0]
	if cl.ID != "dev-1" || cl.User != "alice" || cl.RemoteAddr == "" || cl.Listener != "tcp" || cl.ProtocolVersion != 4 ||
		cl.Subscriptions != 2 || cl.ConnectedAt.IsZero() || cl.ConnectedAt.After(before) {
		t.Fatalf("client: %+v", cl)
	}
	if err := lister.Disconnect("dev-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the client was not disconnected")
	}
	// The engine ends the session after the connection closed.
	waitFor(t, "dev-1 no longer listed", func() bool { return len(lister.Clients()) == 0 })
	if err := lister.Disconnect("dev-1"); !errors.Is(err, plugin.ErrNoClient) {
		t.Fatalf("disconnect of a gone client: %v", err)
	}
	f.connect("dev-1") // it may connect again
}
