package mqtt

import (
	"fmt"
	"strings"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/route"
)

// Rule maps the MQTT topics under Prefix onto one core topic: with Prefix
// `factory/line1/` and Topic `line1`, MQTT `factory/line1/a/b` is core topic
// `line1`, subject `a/b`. Prefix ends with `/` (one is added if missing).
type Rule struct {
	Prefix string `koanf:"prefix"`
	Topic  string `koanf:"topic"`
}

// RootTopic is the core topic of the MQTT topics with an empty first level:
// MQTT `/TopicA/b` is core topic RootTopic, subject `TopicA/b`, and back.
// An empty string is no core topic name, so the empty level needs a name of
// its own; an MQTT first level of that name is refused (it would map onto
// the same core topic), so the mapping stays reversible.
const RootTopic = "mqtt-root"

// errRootReserved refuses an MQTT topic or filter whose first level is
// RootTopic.
var errRootReserved = fmt.Errorf("first level %q is reserved: it is the core topic of topics starting with '/'", RootTopic)

// mapper maps MQTT topic names and filters onto core topics and subjects:
// by the first rule whose prefix matches, else by the first level (MQTT
// `devices/42/telemetry` is topic `devices`, subject `42/telemetry`; an
// empty first level is RootTopic).
type mapper struct {
	rules   []Rule
	byTopic map[string]string // core topic → prefix, for the way back
}

func newMapper(rules []Rule) (*mapper, error) {
	m := &mapper{byTopic: map[string]string{}}
	for _, r := range rules {
		if r.Prefix == "" || strings.ContainsAny(r.Prefix, "+#") || r.Prefix[0] == '$' {
			return nil, fmt.Errorf("mqtt: topic rule %q → %q: the prefix must be a non-empty topic name without wildcards, not starting with '$'", r.Prefix, r.Topic)
		}
		if err := core.ValidTopic(r.Topic); err != nil || r.Topic[0] == '%' {
			return nil, fmt.Errorf("mqtt: topic rule %q → %q: not a valid core topic name", r.Prefix, r.Topic)
		}
		if !strings.HasSuffix(r.Prefix, "/") {
			r.Prefix += "/"
		}
		if r.Topic == RootTopic {
			return nil, fmt.Errorf("mqtt: topic rule %q → %q: %s is the core topic of MQTT topics with an empty first level", r.Prefix, r.Topic, RootTopic)
		}
		if _, dup := m.byTopic[r.Topic]; dup {
			return nil, fmt.Errorf("mqtt: two topic rules map onto core topic %q", r.Topic)
		}
		m.rules = append(m.rules, r)
		m.byTopic[r.Topic] = r.Prefix
	}
	return m, nil
}

// toCore maps an MQTT topic name onto a core topic and subject.
func (m *mapper) toCore(name string) (topic, subject string, err error) {
	for _, r := range m.rules {
		if strings.HasPrefix(name, r.Prefix) {
			return r.Topic, name[len(r.Prefix):], nil
		}
	}
	topic, subject, _ = strings.Cut(name, "/")
	if topic == "" {
		return RootTopic, subject, nil
	}
	if topic == RootTopic {
		return "", "", errRootReserved
	}
	if err := core.ValidTopic(topic); err != nil {
		return "", "", fmt.Errorf("first level %q is not a Ferry topic name (letters, digits, '_', '-', '|', at most 127): %v", clip(topic), err)
	}
	if topic[0] == '%' {
		return "", "", fmt.Errorf("first level %q: names starting with '%%' are reserved", clip(topic))
	}
	if _, ruled := m.byTopic[topic]; ruled {
		return "", "", fmt.Errorf("topic %q is reached through the prefix %q", topic, m.byTopic[topic])
	}
	return topic, subject, nil
}

// toMQTT maps a core topic and subject back onto an MQTT topic name.
func (m *mapper) toMQTT(topic, subject string) string {
	if p, ok := m.byTopic[topic]; ok {
		return p + subject
	}
	if topic == RootTopic {
		return "/" + subject
	}
	if subject == "" {
		return topic
	}
	return topic + "/" + subject
}

// filter maps an MQTT filter onto what a consumer reads: a core topic (or
// core.AnyTopic) and a subject filter. The result may match more than the
// MQTT filter (a wildcard first level reads every topic); deliveries are
// matched against the MQTT filter itself before they are sent.
func (m *mapper) filter(f string) (core.GroupSub, error) {
	for _, r := range m.rules {
		if strings.HasPrefix(f, r.Prefix) {
			return subjectFilter(r.Topic, f[len(r.Prefix):])
		}
	}
	first, rest, more := strings.Cut(f, "/")
	switch {
	case first == "#" || first == "+" || len(m.rules) > 0 && strings.ContainsAny(f, "+#"):
		// Any topic; with rules, a wildcard may span a prefix: read all.
		if first == "+" && !more {
			return core.GroupSub{Topic: core.AnyTopic, Filter: route.Exact("")}, nil
		}
		if first == "+" && len(m.rules) == 0 {
			return subjectFilter(core.AnyTopic, rest)
		}
		return core.GroupSub{Topic: core.AnyTopic}, nil
	case first == "":
		return subjectFilter(RootTopic, rest) // `/` and `/…` (more is true)
	case first == RootTopic:
		return core.GroupSub{}, errRootReserved
	case !more:
		return core.GroupSub{Topic: first, Filter: route.Exact("")}, nil
	}
	if err := core.ValidTopic(first); err != nil || first[0] == '%' {
		return core.GroupSub{}, fmt.Errorf("first level %q is not a Ferry topic name", clip(first))
	}
	return subjectFilter(first, rest)
}

func subjectFilter(topic, rest string) (core.GroupSub, error) {
	if rest == "" {
		return core.GroupSub{Topic: topic, Filter: route.Exact("")}, nil
	}
	if !strings.ContainsAny(rest, "+#") {
		return core.GroupSub{Topic: topic, Filter: route.Exact(rest)}, nil
	}
	f, err := route.ParseFilter(rest)
	if err != nil {
		return core.GroupSub{}, err
	}
	return core.GroupSub{Topic: topic, Filter: f}, nil
}

// matches reports whether MQTT topic name matches MQTT filter f (no shares).
func matches(f, name string) bool {
	if name != "" && name[0] == '$' && (f == "" || f[0] == '+' || f[0] == '#') {
		return false // [MQTT-4.7.2-1]
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := strings.Cut(name, "/")
		if fl != "+" && fl != nl {
			return false
		}
		switch {
		case !fmore:
			return !nmore
		case !nmore:
			return frest == "#"
		}
		f, name = frest, nrest
	}
}

// shareOf splits a shared subscription `$share/G/filter` into its group and
// filter; ok is false for any other filter.
func shareOf(f string) (group, filter string, ok bool) {
	rest, ok := strings.CutPrefix(f, "$share/")
	if !ok {
		return "", "", false
	}
	group, filter, ok = strings.Cut(rest, "/")
	return group, filter, ok && group != "" && filter != ""
}

// clip shortens s to at most 64 bytes for a log line or a reason string,
// cutting at a character boundary: a reason string must be valid UTF-8
// [MQTT-1.5.4-1], and a strict client drops the connection over one that
// is not.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return cutUTF8(s, 64) + "..."
}
