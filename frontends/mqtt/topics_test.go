package mqtt

import (
	"strings"
	"testing"

	"github.com/ferrymq/ferry/core"
)

func TestMapping(t *testing.T) {
	m, err := newMapper([]Rule{{Prefix: "factory/line1", Topic: "line1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, topic, subject string }{
		{"devices/42/telemetry", "devices", "42/telemetry"},
		{"alerts", "alerts", ""},
		{"factory/line1/press/temp", "line1", "press/temp"},
		{"factory/line2/x", "factory", "line2/x"},
	} {
		topic, subject, err := m.toCore(c.name)
		if err != nil || topic != c.topic || subject != c.subject {
			t.Errorf("toCore(%q) = %q, %q, %v; want %q, %q", c.name, topic, subject, err, c.topic, c.subject)
		}
		if back := m.toMQTT(topic, subject); back != c.name {
			t.Errorf("toMQTT(%q, %q) = %q, want %q", topic, subject, back, c.name)
		}
	}
	for _, bad := range []string{"%RETRY%x/y", "line1/x", "bad topic/x", strings.Repeat("a", 200) + "/x"} {
		if _, _, err := m.toCore(bad); err == nil {
			t.Errorf("toCore(%q) accepted", bad)
		}
	}
}

// FuzzFilterMapping checks that what a filter reads in the core covers what
// it matches in MQTT: for a topic name the MQTT filter matches, the mapped
// core subscription matches the mapped core topic and subject. It also
// checks that nothing panics on any input.
func FuzzFilterMapping(f *testing.F) {
	for _, s := range [][2]string{
		{"devices/+/telemetry", "devices/4/telemetry"}, {"#", "a"}, {"+", "a"}, {"+/#", "a/b/c"},
		{"a/#", "a"}, {"factory/line1/#", "factory/line1/x"}, {"factory/+/x", "factory/line1/x"}, {"a/+", "a/"},
	} {
		f.Add(s[0], s[1])
	}
	m, err := newMapper([]Rule{{Prefix: "factory/line1/", Topic: "line1"}})
	if err != nil {
		f.Fatal(err)
	}
	plain, _ := newMapper(nil)
	f.Fuzz(func(t *testing.T, filter, name string) {
		for _, mp := range []*mapper{m, plain} {
			sub, err := mp.filter(filter)
			topic, subject, terr := mp.toCore(name)
			if err != nil || terr != nil || !validFilter(filter) || strings.ContainsAny(name, "+#\x00") || !matches(filter, name) {
				continue
			}
			if sub.Topic != core.AnyTopic && sub.Topic != topic {
				t.Fatalf("filter %q reads topic %q, but matches %q which is topic %q", filter, sub.Topic, name, topic)
			}
			if !sub.Filter.Match(subject) {
				t.Fatalf("filter %q reads %q with %q, which misses subject %q of %q", filter, sub.Topic, sub.Filter, subject, name)
			}
		}
	})
}

// validFilter is MQTT's rule for a topic filter [MQTT-4.7.1].
func validFilter(f string) bool {
	if f == "" {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) || strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}
