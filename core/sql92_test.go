package core

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ferrymq/ferry/core/route"
)

func mustSQL92(t testing.TB, expr string) route.Filter {
	t.Helper()
	f, err := route.ParseSQL92(expr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// publishProps stores n messages in queue 0 of topic; message i has
// property a = i, region from regions in turn, and subject tag i%2.
func publishProps(t *testing.T, b *Broker, topic string, n int, regions ...string) {
	t.Helper()
	_, before := b.Offsets(topic, 0)
	for i := range n {
		m := &Message{Topic: topic, Subject: "tag" + strconv.Itoa(i%2), Body: []byte(strconv.Itoa(i)),
			Properties: PropertiesOf(map[string]string{"a": strconv.Itoa(i), "region": regions[i%len(regions)]})}
		if _, err := b.Publish(t.Context(), m, PublishOptions{Queue: 0}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the messages indexed", func() bool {
		_, hi := b.Offsets(topic, 0)
		return hi == before+int64(n)
	})
}

// TestReadSQL92: a read with a SQL92 filter keeps the messages whose
// properties match, passes over the others, and sees TAGS as RocketMQ does.
func TestReadSQL92(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t)).Broker
	if _, err := b.CreateTopic("t", 1); err != nil {
		t.Fatal(err)
	}
	publishProps(t, b, "t", 20, "eu", "us", "ap")
	for _, c := range []struct {
		expr string
		want string
	}{
		{"a > 5 AND region IN ('eu','us')", "[6 7 9 10 12 13 15 16 18 19]"},
		{"a BETWEEN 3 AND 5 OR TAGS = 'tag1' AND a >= 17", "[3 4 5 17 19]"},
		{"missing = 1 OR NOT (missing = 1)", "[]"},
		{"missing IS NULL AND region = 'ap' AND a < 9", "[2 5 8]"},
	} {
		res, err := b.Read(t.Context(), "t", 0, 0, ReadOptions{Max: 100, Filter: mustSQL92(t, c.expr)})
		var got []string
		for _, m := range res.Messages {
			got = append(got, string(m.Body))
		}
		if err != nil || fmt.Sprint(got) != c.want && !(len(got) == 0 && c.want == "[]") || res.Next != 20 {
			t.Errorf("%q: read %v, next %d, %v; want %s", c.expr, got, res.Next, err, c.want)
		}
	}
	if _, err := b.Subscribe("t", mustSQL92(t, "a > 1"), func(*Message) {}); err == nil {
		t.Fatal("a live subscription took a SQL92 filter")
	}
}

// TestGroupSQL92: members of a group subscribing with a SQL92 filter and a
// tag filter to one topic read the union of what they select.
func TestGroupSQL92(t *testing.T) {
	b := openBroker(t, t.TempDir(), testConfig(t))
	b.CreateTopic("t", 1)
	c := newCollector()
	m := join(t, b.Broker, "g", "m", MemberOptions{Subscriptions: []GroupSub{
		{Topic: "t", Filter: mustSQL92(t, "a < 3")},
		{Topic: "t", Filter: mustFilter(t, "tag1")},
	}})
	defer consume(t, m, c, PushOptions{}, nil)()
	publishProps(t, b.Broker, "t", 10, "eu")
	waitFor(t, 5*time.Second, "the queue consumed", func() bool {
		info, _ := b.Group("g")
		return len(info.Queues) > 0 && info.Queues[0].Lag == 0 && c.total() >= 7
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	got := slices.Sorted(slices.Values(c.by["m"]))
	if got := fmt.Sprint(got); got != "[0 1 2 3 5 7 9]" || len(c.seen) != 7 {
		t.Fatalf("a < 3 or tag1: got %s, want [0 1 2 3 5 7 9]", got)
	}
}
