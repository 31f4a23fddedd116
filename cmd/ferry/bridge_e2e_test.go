package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/internal/rabbittest"
)

// The whole path through the real binary: MQTT devices → Ferry → the
// outbound bridge → a RabbitMQ queue bound to <topic>.*.telemetry; and a
// RabbitMQ publish → the inbound bridge → an MQTT subscriber and a native
// consumer group.
func TestMQTTThroughTheRabbitMQBridge(t *testing.T) {
	url := rabbittest.URL(t)
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	telemetry, commands := "tele"+run, "cmds"+run

	_, ch := rabbittest.Channel(t, url)
	// The inbound bridge declares its queue, durable: remove it once Ferry
	// is gone (cleanups run last first), or every run leaves one behind.
	t.Cleanup(func() { ch.QueueDelete("ferry-e2e-in-"+run, false, false, false) })
	q, err := ch.QueueDeclare("ferry-e2e-"+run, true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, telemetry+".*.telemetry", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	bin := buildFerry(t)
	cfg := filepath.Join(t.TempDir(), "ferry.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`bridges:
  - name: out
    direction: outbound
    url: %[1]s
    topic: %[2]s
    filter: +/telemetry
    start: first
  - name: in
    direction: inbound
    url: %[1]s
    topic: %[3]s
    queue:
      name: ferry-e2e-in-%[4]s
      declare: true
      bindings:
        - exchange: amq.topic
          key: %[3]s.#
`, url, telemetry, commands, run)), 0o600)
	p := startFerry(t, bin, "serve", "--config", cfg, "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--namesrv-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0",
		"--mqtt-ws-addr", "off", "--http-addr", "off")
	if !p.waitLog(`msg="ferry ready"`, time.Minute) {
		t.Fatalf("ferry did not start:\n%s", p.log())
	}
	mqttAddr := regexp.MustCompile(`msg="mqtt: listening".*listener=tcp addr=(\S+)`).FindStringSubmatch(p.log())[1]
	ns := regexp.MustCompile(`msg="namesrv listening".* addr=(\S+)`).FindStringSubmatch(p.log())[1]

	mqttClient := func(id string, h paho.MessageHandler) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(id).SetDefaultPublishHandler(h))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}

	// Out: 5 devices × 20 telemetry messages, and status messages the
	// bridge's filter leaves in Ferry.
	pub := mqttClient("devices", nil)
	for i := range 20 {
		for d := range 5 {
			pub.Publish(fmt.Sprintf("%s/%d/telemetry", telemetry, d), 1, false, strconv.Itoa(i)).Wait()
		}
		pub.Publish(telemetry+"/0/status", 1, false, "ok").Wait()
	}
	next := map[string]int{}
	for n := 0; n < 100; n++ {
		select {
		case d := <-deliveries:
			dev := strings.TrimSuffix(strings.TrimPrefix(d.RoutingKey, telemetry+"."), ".telemetry")
			if want := fmt.Sprintf("%s.%s.telemetry", telemetry, dev); d.RoutingKey != want || dev == "" {
				t.Fatalf("routing key %q", d.RoutingKey)
			}
			if string(d.Body) != strconv.Itoa(next[dev]) {
				t.Fatalf("device %s: got %q, want %d (order or a loss)", dev, d.Body, next[dev])
			}
			next[dev]++
		case <-time.After(30 * time.Second):
			t.Fatalf("RabbitMQ got %d of 100 messages:\n%s", n, p.log())
		}
	}

	// In: a RabbitMQ publish reaches an MQTT subscriber and a native group.
	var mu sync.Mutex
	var got []string
	sub := mqttClient("ops", func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got = append(got, m.Topic()+" "+string(m.Payload()))
		mu.Unlock()
	})
	if tok := sub.Subscribe(commands+"/+/cmd", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The inbound bridge declares and binds its queue once connected: a
	// publish before that would be unroutable in RabbitMQ.
	if !p.waitLog(`msg="rabbitmq bridge: consuming"`, 30*time.Second) {
		t.Fatalf("the inbound bridge did not start consuming:\n%s", p.log())
	}
	if err := ch.PublishWithContext(ctx, "amq.topic", commands+".7.cmd", true, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("reboot")}); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, ns, commands) // the bridge's first message created the topic
	nativeGot := make(chan string, 1)
	consumer, err := client.NewPushConsumer("ops-service", client.WithNameServers(ns), client.WithConsumeFrom(client.ConsumeFromFirst))
	if err != nil {
		t.Fatal(err)
	}
	consumer.Subscribe(commands, "*", func(_ context.Context, m *client.MessageExt) error {
		select {
		case nativeGot <- m.Tag + " " + string(m.Body):
		default:
		}
		return nil
	})
	if err := consumer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	select {
	case s := <-nativeGot:
		if s != "7/cmd reboot" {
			t.Fatalf("native consumer got %q", s)
		}
	case <-ctx.Done():
		t.Fatalf("the native group got nothing:\n%s", p.log())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != commands+"/7/cmd reboot" {
		t.Fatalf("MQTT subscriber got %q", got)
	}
}
