package amqp

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// Each basic.publish stored is timed in ferry_amqp_publish_duration_seconds.
func TestPublishLatencyObserved(t *testing.T) {
	f := startFerry(t, Config{})
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(f.srv); err != nil {
		t.Fatal(err)
	}
	ch := openChannel(t, f.dial(t))
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "amq.topic", "orders.eu", false, false, amqp091.Publishing{Body: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil || !ok {
			t.Fatalf("confirm: %v %v", ok, err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "ferry_amqp_publish_duration_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n != 3 {
				t.Fatalf("%d publishes timed, want 3", n)
			}
			return
		}
	}
	t.Fatal("no ferry_amqp_publish_duration_seconds")
}
