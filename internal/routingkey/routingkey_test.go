package routingkey

import (
	"testing"

	"github.com/ferrymq/ferry/core"
)

func TestKeyAndSplit(t *testing.T) {
	for _, tc := range []struct{ topic, subject, key string }{
		{"devices", "42/telemetry", "devices.42.telemetry"},
		{"alerts", "", "alerts"},
	} {
		if got := Key(tc.topic, tc.subject); got != tc.key {
			t.Errorf("Key(%q, %q) = %q, want %q", tc.topic, tc.subject, got, tc.key)
		}
		if topic, subject := Split(tc.key); topic != tc.topic || subject != tc.subject {
			t.Errorf("Split(%q) = %q, %q", tc.key, topic, subject)
		}
	}
}

func TestRender(t *testing.T) {
	for _, tc := range []struct{ tmpl, topic, subject, key, want string }{
		{"{topic}.{subject}", "devices", "42/telemetry", "", "devices.42.telemetry"},
		{"ferry.{topic}.{subject}", "alerts", "", "", "ferry.alerts"},
		{"{key}.{subject}", "t", "a/b", "k1", "k1.a.b"},
		{"{key}.{subject}", "t", "a", "", "a"},
	} {
		if got := Render(tc.tmpl, tc.topic, tc.subject, tc.key); got != tc.want {
			t.Errorf("Render(%q) = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
}

func TestSubjectOf(t *testing.T) {
	for _, tc := range []struct{ topic, key, want string }{
		{"devices", "devices.42.telemetry", "42/telemetry"},
		{"devices", "devices", ""},
		{"commands", "cmd.7.set", "cmd/7/set"},
		{"devices", "devicesX.1", "devicesX/1"},
	} {
		if got := SubjectOf(tc.topic, tc.key); got != tc.want {
			t.Errorf("SubjectOf(%q, %q) = %q, want %q", tc.topic, tc.key, got, tc.want)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, key string
		want         bool
	}{
		{"devices.#", "devices", true},
		{"devices.#", "devices.42.telemetry", true},
		{"devices.*.telemetry", "devices.42.telemetry", true},
		{"devices.*.telemetry", "devices.42.x.telemetry", false},
		{"devices.*", "devices", false},
		{"#.telemetry", "devices.42.telemetry", true},
		{"a.#.b", "a.b", true},
		{"a.#.b", "a.x.y.b", true},
		{"a.#.b", "a.x.y.c", false},
		{"#", "", true},
		{"*", "", true},
		{"a", "a", true},
		{"a", "b", false},
	} {
		if got := Match(tc.pattern, tc.key); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.pattern, tc.key, got)
		}
	}
}

func TestTopicSubCoversMatch(t *testing.T) {
	keys := []string{"devices", "devices.42", "devices.42.telemetry", "devices.42.x.telemetry", "alerts.1"}
	for _, p := range []string{"devices.#", "devices.*.telemetry", "devices", "#.telemetry", "*.42.#", "devices.#.telemetry", "alerts.*"} {
		sub := TopicSub(p)
		for _, k := range keys {
			if !Match(p, k) {
				continue
			}
			topic, subject := Split(k)
			if sub.Topic != core.AnyTopic && sub.Topic != topic || !sub.Filter.Match(subject) {
				t.Errorf("pattern %q reads %s %v, which misses key %q", p, sub.Topic, sub.Filter, k)
			}
		}
	}
}
