// Package routingkey maps AMQP routing keys onto Ferry's topics and
// subjects, and back, as RabbitMQ's MQTT plugin maps MQTT topics onto the
// amq.topic exchange: routing key `devices.42.telemetry` is core topic
// `devices`, subject `42/telemetry` (MQTT `devices/42/telemetry`). The
// RabbitMQ bridge and the AMQP front-end share it, so that a message keeps
// its place whichever way it crosses.
package routingkey

import (
	"strings"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/route"
)

// Key is the routing key of a topic's message with subject: the topic, a
// dot, and the subject with its '/' turned to '.'. An empty subject leaves
// no stray dot: topic `alerts`, subject "" is `alerts`.
func Key(topic, subject string) string {
	if subject == "" {
		return topic
	}
	return topic + "." + strings.ReplaceAll(subject, "/", ".")
}

// Split is Key reversed: the first word of key is the topic, the rest,
// '.' turned to '/', the subject.
func Split(key string) (topic, subject string) {
	topic, rest, _ := strings.Cut(key, ".")
	return topic, strings.ReplaceAll(rest, ".", "/")
}

// SubjectOf maps a routing key onto a subject of a topic chosen
// otherwise (a bridge's configured topic): '.' → '/', and a leading
// "<topic>." is dropped, so that `devices.42.telemetry` into topic devices
// is subject `42/telemetry` (Key, reversed).
func SubjectOf(topic, key string) string {
	if key == topic {
		return ""
	}
	key = strings.TrimPrefix(key, topic+".")
	return strings.ReplaceAll(key, ".", "/")
}

// Render renders a routing-key template: {topic}, {subject} with '/'
// turned to '.', {key} the message's first key. Empty parts leave no stray
// dots: `{topic}.{subject}` of topic `alerts` with no subject is `alerts`.
func Render(tmpl, topic, subject, firstKey string) string {
	if tmpl == "{topic}.{subject}" { // the common case: no replacer
		return Key(topic, subject)
	}
	s := strings.NewReplacer("{topic}", topic, "{subject}", strings.ReplaceAll(subject, "/", "."), "{key}", firstKey).Replace(tmpl)
	for strings.Contains(s, "..") {
		s = strings.ReplaceAll(s, "..", ".")
	}
	return strings.Trim(s, ".")
}

// Match reports whether routing key matches an AMQP topic binding
// pattern: words are separated by '.', `*` matches exactly one word and
// `#` zero or more. It walks both strings in place (no split): a queue
// runs it on every message a topic binding reads.
func Match(pattern, key string) bool {
	return matchWords(words{pattern, true}, words{key, true})
}

// words is what is left of a '.'-separated list: s, when more is set (an
// empty s is then one empty word).
type words struct {
	s    string
	more bool
}

// next is the first word and the rest.
func (w words) next() (string, words) {
	head, rest, more := strings.Cut(w.s, ".")
	return head, words{rest, more}
}

func matchWords(p, k words) bool {
	for p.more {
		w, rest := p.next()
		switch w {
		case "#":
			// Collapse runs of '#', then try every split point.
			for rest.more {
				w2, after := rest.next()
				if w2 != "#" {
					break
				}
				rest = after
			}
			if !rest.more {
				return true
			}
			for {
				if matchWords(rest, k) {
					return true
				}
				if !k.more {
					return false
				}
				_, k = k.next()
			}
		case "*":
			if !k.more {
				return false
			}
		default:
			if !k.more {
				return false
			}
			if kw, _ := k.next(); kw != w {
				return false
			}
		}
		p = rest
		_, k = k.next()
	}
	return !k.more
}

// SubjectFilter maps an AMQP topic pattern over subjects (words joined
// with '/') onto a core subject filter that matches at least what the
// pattern matches: `*` is `+`, a trailing `#` is `#`, and a `#` elsewhere
// (which MQTT-style filters cannot say) reads everything. A reader checks
// each message against the pattern itself (Match) before it delivers it.
func SubjectFilter(pattern string) route.Filter {
	if pattern == "" {
		return route.Exact("")
	}
	words := strings.Split(pattern, ".")
	for i, w := range words {
		switch {
		case w == "#" && i < len(words)-1:
			return route.Filter{}
		case w == "*":
			words[i] = "+"
		case w == "#":
		case strings.ContainsAny(w, "+#/"):
			return route.Filter{} // not expressible as a subject filter: read all
		}
	}
	expr := strings.Join(words, "/")
	if !strings.ContainsAny(expr, "+#") {
		return route.Exact(expr)
	}
	f, err := route.ParseFilter(expr)
	if err != nil {
		return route.Filter{}
	}
	return f
}

// TopicSub maps a binding pattern of the amq.topic exchange onto the core
// subscription that reads at least what it matches: `devices.*.telemetry`
// is topic `devices`, subject filter `+/telemetry`; a pattern whose first
// word is a wildcard, or no topic name, reads every topic (core.AnyTopic).
func TopicSub(pattern string) core.GroupSub {
	topic, rest, more := strings.Cut(pattern, ".")
	if topic == "*" || topic == "#" || core.ValidTopic(topic) != nil || topic[0] == '%' {
		return core.GroupSub{Topic: core.AnyTopic}
	}
	if !more {
		return core.GroupSub{Topic: topic, Filter: route.Exact("")}
	}
	if rest == "#" {
		return core.GroupSub{Topic: topic} // `devices.#` matches `devices` too: the whole topic
	}
	return core.GroupSub{Topic: topic, Filter: SubjectFilter(rest)}
}
