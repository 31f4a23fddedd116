package mqtt

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/frontends/native/nativetest"
)

// Ten MQTT devices publish telemetry; a native consumer group on topic
// devices with filter +/telemetry gets every message once, in order per
// device; a native producer's command reaches an MQTT subscriber.
func TestMQTTDevicesAndNativeServices(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	ns := nativetest.Serve(t, f.core, testLogger(t))
	if _, err := f.core.CreateTopic("devices", 8); err != nil {
		t.Fatal(err)
	}
	admin, err := client.NewAdmin(client.WithNameServers(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.WaitForRoute(ctx, "devices"); err != nil {
		t.Fatal(err)
	}

	const devices, per = 10, 100
	var mu sync.Mutex
	got := map[string][]int{} // device → sequence numbers, in arrival order
	total := 0
	done := make(chan struct{})
	consumer, err := client.NewPushConsumer("telemetry-service", client.WithNameServers(ns), client.WithOrdered(),
		client.WithConsumeFrom(client.ConsumeFromFirst), client.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	err = consumer.Subscribe("devices", "+/telemetry", func(_ context.Context, m *client.MessageExt) error {
		dev, _, _ := strings.Cut(m.Tag, "/")
		seq, _ := strconv.Atoi(string(m.Body))
		mu.Lock()
		got[dev] = append(got[dev], seq)
		if total++; total == devices*per {
			close(done)
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()

	cmds := newInbox()
	ops := f.connect("ops")
	wait(t, ops.Subscribe("devices/+/cmd", 1, cmds.handler), "subscribe to commands")

	var wg sync.WaitGroup
	for d := range devices {
		c := f.connect(fmt.Sprintf("device-%d", d))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				c.Publish(fmt.Sprintf("devices/%d/telemetry", d), 1, false, strconv.Itoa(i)).Wait()
			}
			c.Publish(fmt.Sprintf("devices/%d/status", d), 1, false, "not telemetry").Wait()
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("native consumer got %d of %d messages", total, devices*per)
	}

	producer, err := client.NewProducer(client.WithNameServers(ns), client.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if _, err := producer.Send(ctx, &client.Message{Topic: "devices", Tag: "7/cmd", Body: []byte("reboot")}); err != nil {
		t.Fatal(err)
	}
	m := cmds.waitN(t, 1)[0]
	if m.Topic() != "devices/7/cmd" || string(m.Payload()) != "reboot" || m.Qos() != 1 {
		t.Fatalf("MQTT subscriber got %s %q QoS %d", m.Topic(), m.Payload(), m.Qos())
	}

	time.Sleep(200 * time.Millisecond) // room for a duplicate or a status message to show up
	mu.Lock()
	defer mu.Unlock()
	if total != devices*per {
		t.Fatalf("native consumer got %d messages, want %d", total, devices*per)
	}
	for dev, seqs := range got {
		for i, s := range seqs {
			if s != i {
				t.Fatalf("device %s: message %d is #%d: order or once-only delivery lost (%v)", dev, i, s, seqs[:min(len(seqs), 20)])
			}
		}
	}
}
