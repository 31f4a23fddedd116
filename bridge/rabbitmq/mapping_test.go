package rabbitmq

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
)

func TestRoutingKey(t *testing.T) {
	for _, tc := range []struct {
		tmpl, topic, subject string
		keys                 []string
		want                 string
	}{
		{DefaultRoutingKey, "devices", "42/telemetry", nil, "devices.42.telemetry"},
		{DefaultRoutingKey, "alerts", "", nil, "alerts"},
		{"ferry.{topic}.{subject}", "devices", "42/telemetry", nil, "ferry.devices.42.telemetry"},
		{"ferry.{topic}.{subject}", "alerts", "", nil, "ferry.alerts"},
		{"{key}.{subject}", "t", "a/b", []string{"k1", "k2"}, "k1.a.b"},
		{"{key}.{subject}", "t", "a", nil, "a"},
	} {
		m := &core.Message{Topic: tc.topic, Subject: tc.subject, Keys: tc.keys}
		if got := routingKey(tc.tmpl, m); got != tc.want {
			t.Errorf("routingKey(%q, %s %q) = %q, want %q", tc.tmpl, tc.topic, tc.subject, got, tc.want)
		}
	}
}

func TestMessageFromDelivery(t *testing.T) {
	long := string(make([]byte, maxField+1))
	d := &amqp.Delivery{RoutingKey: "devices.1.t", Body: []byte("b"), MessageId: "mid", Timestamp: time.Unix(10, 0),
		Headers: amqp.Table{"s": "v", "n": int64(5), "ok": true, "long": long, "table": amqp.Table{},
			HeaderKeys: []any{"k", 3}, HeaderHops: int32(2), HeaderOrigin: "amqp://first:5672/%2F", HeaderSubject: "ignored"}}
	m, dropped := message("devices", "amqp://here:5672/%2F", d)
	if dropped != 2 {
		t.Errorf("dropped %d headers, want 2 (too long, table)", dropped)
	}
	p := m.Properties.Map()
	if m.Subject != "1/t" || p["s"] != "v" || p["n"] != "5" || p["ok"] != "true" || p[HeaderHops] != "2" ||
		p[HeaderOrigin] != "amqp://first:5672/%2F" || p[PropAMQPMessageID] != "mid" || len(m.Keys) != 1 ||
		m.BornTime != time.Unix(10, 0).UnixNano() {
		t.Fatalf("got %+v", m)
	}
	if _, ok := p[HeaderSubject]; ok {
		t.Errorf("subject header kept as a property")
	}
}

func TestValidate(t *testing.T) {
	base := Config{Name: "b", Direction: Outbound, URL: "amqp://h/", Topic: "t"}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Direction = "both" }, "direction"},
		{func(c *Config) { c.URL = "http://h/" }, "url"},
		{func(c *Config) { c.Filter = "a/#/b" }, "filter"},
		{func(c *Config) { c.Direction = Inbound }, "queue"},
		{func(c *Config) { c.OnNack = "drop" }, "on-nack"},
		{func(c *Config) { c.BackoffMin, c.BackoffMax = time.Minute, time.Second }, "backoff-max"},
	} {
		c := base
		tc.edit(&c)
		if _, err := New(nil, c, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want it to name %s", c, err, tc.want)
		}
	}
	if _, err := New(nil, base, nil); err != nil {
		t.Fatal(err)
	}
}
