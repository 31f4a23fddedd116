package amqp

import (
	"context"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/frontends/mqtt"
)

// withMQTT serves MQTT over f's core and returns its address.
func (f *ferry) withMQTT(t *testing.T) string {
	t.Helper()
	s, err := mqtt.New(f.core, mqtt.Config{Addr: "127.0.0.1:0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Addr("tcp")
}

func pahoClient(t *testing.T, addr, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// An MQTT device's telemetry arrives in an AMQP queue bound to amq.topic;
// an AMQP publish to amq.topic reaches an MQTT subscriber; a consumer
// group of the core (as a native consumer group is) and the AMQP queue on
// one topic each get every message.
func TestMQTTAndAMQPShareTopics(t *testing.T) {
	f := startFerry(t, Config{})
	mqttAddr := f.withMQTT(t)
	ch := openChannel(t, f.dial(t))
	if _, err := ch.QueueDeclare("telemetry", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("telemetry", "devices.*.telemetry", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume("telemetry", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	group, err := f.core.Join("svc", "m1", core.MemberOptions{Subscriptions: []core.GroupSub{{Topic: "devices",
		Since: time.Now().Add(-time.Minute)}}})
	if err != nil {
		t.Fatal(err)
	}

	dev := pahoClient(t, mqttAddr, "device-42")
	const n = 5
	for i := 0; i < n; i++ {
		if tok := dev.Publish("devices/42/telemetry", 1, false, fmt.Sprintf("t%d", i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	dev.Publish("devices/42/status", 1, false, "not telemetry").Wait()
	for i := 0; i < n; i++ {
		d := recv(t, ds)
		if d.Exchange != "amq.topic" || d.RoutingKey != "devices.42.telemetry" {
			t.Fatalf("delivery from MQTT: exchange %q key %q", d.Exchange, d.RoutingKey)
		}
		d.Ack(false)
	}
	noDelivery(t, ds, 300*time.Millisecond)
	seen := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for seen < n+1 {
		got, err := group.Pull(ctx, 32)
		if err != nil {
			t.Fatalf("the core group got %d of %d: %v", seen, n+1, err)
		}
		for _, d := range got {
			seen++
			group.Ack(d)
		}
	}

	// AMQP → MQTT.
	got := make(chan paho.Message, 1)
	sub := pahoClient(t, mqttAddr, "ops")
	if tok := sub.Subscribe("commands/+/set", 1, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	publish(t, ch, "amq.topic", "commands.7.set", false, "on")
	select {
	case m := <-got:
		if m.Topic() != "commands/7/set" || string(m.Payload()) != "on" {
			t.Fatalf("MQTT got %s %q", m.Topic(), m.Payload())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the MQTT subscriber got nothing")
	}
}
