package mqtt

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// The engine's close callback lists a listener's clients with
// Clients.GetByListener, which read-locks the client map twice: a client
// leaving in between (its write lock waits for the first read lock and
// blocks the second) deadlocked a shutdown and hung a CI run for 10
// minutes. Ferry's listeners disconnect their clients themselves.
func TestListenersDoNotUseTheEngineCloseCallback(t *testing.T) {
	engine := func(string) { t.Error("a listener called the engine's close callback") }
	for _, mk := range []func(net.Listener, func(string)) listeners.Listener{
		func(ln net.Listener, d func(string)) listeners.Listener {
			return &streamListener{id: "tcp", ln: ln, disconnect: d}
		},
		func(ln net.Listener, d func(string)) listeners.Listener {
			return newWSListener("ws", ln, d, nil, time.Second, testLogger(t))
		},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		l := mk(ln, func(id string) { got = append(got, id) })
		l.Close(engine)
		l.Close(engine) // once
		if len(got) != 1 || got[0] != l.ID() {
			t.Fatalf("%s: disconnect called with %v, want %s once", l.ID(), got, l.ID())
		}
	}
}

// TestCloseWhileClientsLeave closes Ferry while its clients disconnect:
// Close returns, every round.
func TestCloseWhileClientsLeave(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	for round := range 3 {
		var wg sync.WaitGroup
		for i := range 40 {
			c := f.connect(fmt.Sprintf("leaver-%d-%d", round, i))
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Disconnect(0)
			}()
		}
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			f.stop()
		}()
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Close did not return while clients were leaving", round)
		}
		wg.Wait()
		f.start("127.0.0.1:0")
	}
}
