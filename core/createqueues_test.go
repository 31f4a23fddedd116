package core

import (
	"context"
	"testing"
)

// A publish that creates its topic takes the queue count it asks for,
// capped at DefaultQueues (the count TBW102 is advertised with); a topic
// that exists keeps its own.
func TestAutoCreateQueueCount(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultQueues = 8
	b := openBroker(t, t.TempDir(), cfg)
	for _, tc := range []struct {
		topic string
		ask   int
		want  int
	}{
		{"asks-4", 4, 4},
		{"asks-none", 0, 8},
		{"asks-16", 16, 8},
		{"asks-4", 2, 4}, // exists already
	} {
		if _, err := b.Publish(context.Background(), &Message{Topic: tc.topic, Body: []byte("x")},
			PublishOptions{Queue: QueueAuto, CreateQueues: tc.ask}); err != nil {
			t.Fatal(err)
		}
		if info, err := b.Topic(tc.topic); err != nil || info.Queues != tc.want {
			t.Errorf("%s, asking %d: %d queues (%v), want %d", tc.topic, tc.ask, info.Queues, err, tc.want)
		}
	}
}
