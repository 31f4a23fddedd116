package mqtt

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"

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
		{"/TopicA", RootTopic, "TopicA"},
		{"/TopicA/b", RootTopic, "TopicA/b"},
		{"/", RootTopic, ""},
		{"//", RootTopic, "/"},
	} {
		topic, subject, err := m.toCore(c.name)
		if err != nil || topic != c.topic || subject != c.subject {
			t.Errorf("toCore(%q) = %q, %q, %v; want %q, %q", c.name, topic, subject, err, c.topic, c.subject)
		}
		if back := m.toMQTT(topic, subject); back != c.name {
			t.Errorf("toMQTT(%q, %q) = %q, want %q", topic, subject, back, c.name)
		}
	}
	for _, bad := range []string{"%RETRY%x/y", "line1/x", "bad topic/x", strings.Repeat("a", 200) + "/x", RootTopic + "/x", RootTopic} {
		if _, _, err := m.toCore(bad); err == nil {
			t.Errorf("toCore(%q) accepted", bad)
		}
	}
}

// Filters on topics with an empty first level read RootTopic; a wildcard
// first level reads every topic, RootTopic included.
func TestEmptyFirstLevelFilters(t *testing.T) {
	m, _ := newMapper(nil)
	for _, c := range []struct{ filter, topic, subject string }{
		{"/TopicA", RootTopic, "TopicA"},
		{"/+", RootTopic, "TopicA"},
		{"/#", RootTopic, "a/b"},
		{"+/TopicA", core.AnyTopic, "TopicA"},
		{"#", core.AnyTopic, "TopicA"},
	} {
		sub, err := m.filter(c.filter)
		if err != nil || sub.Topic != c.topic || !sub.Filter.Match(c.subject) {
			t.Errorf("filter(%q) = %q %v, %v; want topic %q matching %q", c.filter, sub.Topic, sub.Filter, err, c.topic, c.subject)
		}
	}
	if _, err := m.filter(RootTopic + "/#"); err == nil {
		t.Errorf("filter %q accepted: it would read the topics starting with '/'", RootTopic+"/#")
	}
	if _, err := newMapper([]Rule{{Prefix: "x/", Topic: RootTopic}}); err == nil {
		t.Errorf("a rule onto %q accepted", RootTopic)
	}
	for _, c := range []struct {
		filter, name string
		want         bool
	}{
		{"+/TopicA", "/TopicA", true}, {"#", "/TopicA", true}, {"/#", "/TopicA", true},
		{"#", "$SYS/x", false}, {"+/x", "$a/x", false}, {"$a/#", "$a/x", true},
	} {
		if got := matches(c.filter, c.name); got != c.want {
			t.Errorf("matches(%q, %q) = %v, want %v", c.filter, c.name, got, c.want)
		}
	}
}

func TestReasonStrings(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	r := cleanReason(long + "\x00")
	if len(r) > maxReason || !utf8.ValidString(r) {
		t.Fatalf("cleanReason: %d bytes, valid UTF-8 %v", len(r), utf8.ValidString(r))
	}
	if got := cleanReason("a\x00b\xffc"); got != "a?b?c" {
		t.Fatalf("cleanReason = %q", got)
	}
	if got := clip(strings.Repeat("é", 40)); !utf8.ValidString(got) {
		t.Fatalf("clip cut a character: %q", got)
	}
	for n := 1; n < 300; n += 7 {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 7, ReasonCode: 0x90,
			ProtocolVersion: 5, Properties: packets.Properties{ReasonString: strings.Repeat("x", n)}}
		var b bytes.Buffer
		if err := pk.PubackEncode(&b); err != nil {
			t.Fatal(err)
		}
		if b.Len() != ackSize(n) {
			t.Fatalf("PUBACK with a %d-byte reason: %d bytes, ackSize says %d", n, b.Len(), ackSize(n))
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
