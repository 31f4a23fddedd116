package core

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTopics(t *testing.T) {
	cfg := testConfig(t)
	cfg.AutoCreateTopics = false
	b := openBroker(t, t.TempDir(), cfg)
	if _, err := b.CreateTopic("devices", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("devices", 4); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("create twice: %v", err)
	}
	if c, err := b.CreateTopic("devices", 6); err != nil || c.Queues != 6 {
		t.Fatalf("grow to 6 queues: %v %v", c, err)
	}
	for _, bad := range []string{"", "a/b", "%RETRY%x", string(make([]byte, 128))} {
		if _, err := b.CreateTopic(bad, 1); !errors.Is(err, ErrInvalidName) {
			t.Errorf("create %q: %v, want ErrInvalidName", bad, err)
		}
	}
	if _, err := b.CreateTopic("x", 5000); !errors.Is(err, ErrInvalidQueue) {
		t.Fatalf("5000 queues: %v", err)
	}
	_, err := b.Publish(context.Background(), &Message{Topic: "nope"}, PublishOptions{Queue: QueueAuto})
	if !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("publish to an unknown topic without auto-create: %v", err)
	}
	publishN(t, b.Broker, "devices", 12, PublishOptions{Queue: QueueAuto}, nil)
	var info TopicInfo
	waitFor(t, 5*time.Second, "12 messages indexed", func() bool { // the index follows the log
		info, _ = b.Topic("devices")
		total := int64(0)
		for _, q := range info.QueueStats {
			total += q.Max - q.Min
		}
		return total == 12
	})
	if len(info.QueueStats) != 6 {
		t.Fatalf("describe: %+v", info)
	}
	for _, q := range info.QueueStats {
		if q.Max != 2 {
			t.Errorf("round robin: queue %d has %d messages, want 2", q.ID, q.Max)
		}
	}
	// Topics survive a restart; deletion too.
	b.close(t)
	b = openBroker(t, b.dir, cfg)
	if ts := b.Topics(); len(ts) != 1 || ts[0].Name != "devices" || ts[0].Queues != 6 {
		t.Fatalf("after restart: %+v", ts)
	}
	if err := b.DeleteTopic("devices"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Topic("devices"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("describe after delete: %v", err)
	}
}

func TestQueueSelection(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 8)
	first := publishN(t, b.Broker, "t", 1, PublishOptions{Queue: QueueAuto, ShardKey: "device-42"}, nil)[0].QueueID
	for _, r := range publishN(t, b.Broker, "t", 20, PublishOptions{Queue: QueueAuto, ShardKey: "device-42"}, nil) {
		if r.QueueID != first {
			t.Fatalf("same key went to queues %d and %d", first, r.QueueID)
		}
	}
	for _, r := range publishN(t, b.Broker, "t", 3, PublishOptions{Queue: 5}, nil) {
		if r.QueueID != 5 {
			t.Fatalf("explicit queue 5: got %d", r.QueueID)
		}
	}
	if _, err := b.Publish(context.Background(), &Message{Topic: "t"}, PublishOptions{Queue: 8}); !errors.Is(err, ErrInvalidQueue) {
		t.Fatalf("queue 8 of 8: %v", err)
	}
}

func TestLiveRouting(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	got := map[string][]string{}
	sub := func(name, topic, filter string) *Subscription {
		s, err := b.Subscribe(topic, mustFilter(t, filter), func(m *Message) {
			got[name] = append(got[name], m.Topic+"/"+m.Subject)
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sub("all", "devices", "*")
	sub("telemetry", "devices", "+/telemetry")
	sub("dev42", "devices", "42/#")
	sub("tags", "devices", "42/telemetry || 7/status")
	sub("any", AnyTopic, "status")
	gone := sub("gone", "devices", "#")
	gone.Close()
	for _, s := range []string{"42/telemetry", "7/status", "9/telemetry", "42"} {
		publishN(t, b.Broker, "devices", 1, PublishOptions{Queue: QueueAuto}, func(int) string { return s })
	}
	publishN(t, b.Broker, "alerts", 1, PublishOptions{Queue: QueueAuto}, func(int) string { return "status" })
	want := map[string]int{"all": 4, "telemetry": 2, "dev42": 2, "tags": 2, "any": 1, "gone": 0}
	for name, n := range want {
		if len(got[name]) != n {
			t.Errorf("%s got %v, want %d messages", name, got[name], n)
		}
	}
}
