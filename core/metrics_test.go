package core

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// scrape registers c in a pedantic registry (which checks the metrics
// against their descriptions) and returns the text exposition.
func scrape(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

func TestMetrics(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	if _, err := b.CreateTopic("t", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTopic("empty", 2); err != nil {
		t.Fatal(err)
	}
	msgs := make([]*Message, 5)
	size := 0
	for i := range msgs {
		msgs[i] = &Message{Topic: "t", Body: []byte(fmt.Sprint("body ", i))}
	}
	if _, err := b.PublishBatch(context.Background(), msgs, PublishOptions{Queue: 0}); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		size += m.Size
	}
	m := join(t, b.Broker, "g", "m1", MemberOptions{Subscriptions: subs("t", "*")})
	ds := pullN(t, m, 5)
	if err := m.Ack(ds[0]); err != nil {
		t.Fatal(err)
	}

	text := scrape(t, NewCollector(b.Broker))
	for _, line := range []string{
		`ferry_topic_messages_total{kind="user",topic="t"} 5`,
		`ferry_topic_retained_messages{kind="user",topic="t"} 5`,
		fmt.Sprintf(`ferry_topic_bytes_total{kind="user",topic="t"} %d`, size),
		`ferry_topic_queues{kind="user",topic="t"} 1`,
		`ferry_topic_queues{kind="user",topic="empty"} 2`,
		`ferry_topic_messages_total{kind="user",topic="empty"} 0`,
		`ferry_group_lag_messages{group="g"} 4`,
		`ferry_group_topic_lag_messages{group="g",kind="user",topic="t"} 4`,
		`ferry_group_inflight_messages{group="g"} 4`,
		`ferry_group_members{group="g"} 1`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("no %q in\n%s", line, text)
		}
	}
	if !strings.Contains(text, `ferry_topic_messages_per_second{kind="user",topic="t"}`) {
		t.Errorf("no rate for t in\n%s", text)
	}
}

func TestTopicKind(t *testing.T) {
	for name, want := range map[string]string{
		"devices": "user", RetryTopic("g"): "retry", DeadLetterTopic("g"): "dead-letter",
		scheduleTopic: "schedule", "%OTHER": "internal",
	} {
		if got := TopicKind(name); got != want {
			t.Errorf("TopicKind(%q) = %q, want %q", name, got, want)
		}
	}
}
