package client

import (
	"context"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// A broker closes an idle connection (native.idle-timeout); the SDK's next
// call dials again, and the caller sees no error.
func TestIdleCloseIsTransparent(t *testing.T) {
	f := startFerryWith(t, &testFerry{limits: remoting.Limits{IdleTimeout: 200 * time.Millisecond}})
	f.createTopic(t, "idle", 1)
	p, err := NewProducer(WithNameServers(f.ns), WithLogger(testLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	broker := f.brokers["broker-a"].fe
	for i := range 3 {
		if _, err := p.Send(ctx, &Message{Topic: "idle", Body: []byte("x")}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		closed := broker.ConnStats().IdleTimeouts
		deadline := time.Now().Add(10 * time.Second)
		for broker.ConnStats().IdleTimeouts == closed { // the producer's connection, idle, is closed
			if time.Now().After(deadline) {
				t.Fatal("the idle connection was not closed")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
