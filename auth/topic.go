package auth

import (
	"fmt"
	"strings"
)

// A pattern is an ACL rule's topic pattern, split into levels at load time so
// that a check walks it without allocating.
type pattern []level

type levelKind uint8

const (
	litLevel  levelKind = iota // matches exactly its text
	plusLevel                  // +: any one level
	hashLevel                  // #: this level and all below, or none (last only)
	varLevel                   // text holding %u or %c (pattern lines only)
)

// level is one level of a pattern.
type level struct {
	kind levelKind
	text string  // litLevel's text, or varLevel's template
	vars varMask // the variables a varLevel uses
}

// varMask is a set of the substitution variables.
type varMask uint8

const (
	varUser   varMask = 1 << iota // %u, the username
	varClient                     // %c, the client id
)

// values are the substitution values of one check. A value is missing when
// it is empty and unsafe when substituting it could widen a pattern: when it
// holds a wildcard or a level separator, or begins with $.
type values struct {
	user, client    string
	missing, unsafe varMask
}

func newValues(user, client string) values {
	v := values{user: user, client: client}
	for _, x := range []struct {
		s string
		m varMask
	}{{user, varUser}, {client, varClient}} {
		switch {
		case x.s == "":
			v.missing |= x.m
		case strings.ContainsAny(x.s, "+#/\x00") || x.s[0] == '$':
			v.unsafe |= x.m
		}
	}
	return v
}

// parsePattern splits a topic pattern (a topic filter) into levels. With
// vars, levels holding %u or %c become templates; otherwise % is plain text.
func parsePattern(s string, vars bool) (pattern, error) {
	if s == "" {
		return nil, fmt.Errorf("empty topic pattern")
	}
	levels := strings.Split(s, "/")
	p := make(pattern, len(levels))
	for i, l := range levels {
		switch {
		case l == "#":
			if i != len(levels)-1 {
				// [MQTT-4.7.1-2] # is the last character of a filter.
				return nil, fmt.Errorf("topic pattern %q: # must be the last level", s)
			}
			p[i] = level{kind: hashLevel}
		case l == "+":
			p[i] = level{kind: plusLevel}
		case strings.ContainsAny(l, "+#"):
			// [MQTT-4.7.1-2] [MQTT-4.7.1-3] a wildcard occupies a whole level.
			return nil, fmt.Errorf("topic pattern %q: a wildcard must be a whole level", s)
		default:
			p[i] = level{kind: litLevel, text: l}
			if vars {
				if strings.Contains(l, "%u") {
					p[i].vars |= varUser
				}
				if strings.Contains(l, "%c") {
					p[i].vars |= varClient
				}
				if p[i].vars != 0 {
					p[i].kind = varLevel
				}
			}
		}
	}
	return p, nil
}

// vars is the set of variables the pattern uses.
func (p pattern) vars() varMask {
	var m varMask
	for _, l := range p {
		m |= l.vars
	}
	return m
}

// validTopic reports whether s is a topic name a client may publish to or
// receive from: not empty, no wildcards [MQTT-4.7.3-1] [MQTT-3.3.2-2].
func validTopic(s string) bool {
	return s != "" && !strings.ContainsAny(s, "+#")
}

// splitFilter splits a subscription filter into levels, or reports it invalid.
func splitFilter(s string) ([]string, bool) {
	if s == "" {
		return nil, false
	}
	levels := strings.Split(s, "/")
	for i, l := range levels {
		if l == "#" && i == len(levels)-1 || l == "+" {
			continue
		}
		if strings.ContainsAny(l, "+#") {
			return nil, false
		}
	}
	return levels, true
}

// wild reports whether l is a wildcard level.
func (l level) wild() bool { return l.kind == plusLevel || l.kind == hashLevel }

// widened reports whether l substitutes an unsafe value. Only deny rules get
// that far (allow rules using such a value are skipped), and for them such a
// level stands for everything from there down, $ topics included: a deny
// rule may be widened, never narrowed, by a value it cannot hold safely.
func (l level) widened(v *values) bool { return l.vars&v.unsafe != 0 }

// dollar reports whether every level l can match begins with $. Safe values
// never begin with $, so a template does exactly when its text does.
func (l level) dollar() bool {
	return (l.kind == litLevel || l.kind == varLevel) && strings.HasPrefix(l.text, "$")
}

// matchSeg reports whether l matches the concrete level s (which may be a
// filter's literal level, never a wildcard).
func (l level) matchSeg(s string, v *values) bool {
	switch l.kind {
	case plusLevel, hashLevel:
		return true
	case litLevel:
		return l.text == s
	}
	// A template: compare it piece by piece instead of building it.
	t := l.text
	for {
		i := strings.IndexByte(t, '%')
		if i < 0 {
			return s == t
		}
		if !strings.HasPrefix(s, t[:i]) {
			return false
		}
		s, t = s[i:], t[i:]
		var val string
		switch {
		case strings.HasPrefix(t, "%u"):
			val = v.user
		case strings.HasPrefix(t, "%c"):
			val = v.client
		default:
			val = "%"
			t = t[1:]
			if !strings.HasPrefix(s, val) {
				return false
			}
			s = s[1:]
			continue
		}
		if !strings.HasPrefix(s, val) {
			return false
		}
		s, t = s[len(val):], t[2:]
	}
}

// matchTopic reports whether p matches the topic name topic.
func (p pattern) matchTopic(topic string, v *values) bool {
	// [MQTT-4.7.2-1] a wildcard first level does not match a topic beginning with $.
	if topic[0] == '$' && p[0].wild() {
		return false
	}
	rest, done := topic, false
	for _, l := range p {
		if l.kind == hashLevel || l.widened(v) {
			return true
		}
		if done {
			return false
		}
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, done = rest, true
		}
		if !l.matchSeg(seg, v) {
			return false
		}
	}
	return done
}

// contains reports whether every topic the filter f matches is one p matches.
func (p pattern) contains(f []string, v *values) bool {
	if strings.HasPrefix(f[0], "$") && p[0].wild() {
		return false // [MQTT-4.7.2-1]
	}
	for i, l := range p {
		if l.kind == hashLevel {
			return true
		}
		if i >= len(f) {
			return false
		}
		switch f[i] {
		case "#":
			return false // f reaches levels (and a parent) that p does not
		case "+":
			if l.kind != plusLevel {
				return false
			}
		default:
			if !l.matchSeg(f[i], v) {
				return false
			}
		}
	}
	return len(f) == len(p)
}

// overlaps reports whether some topic matches both p and the filter f.
func (p pattern) overlaps(f []string, v *values) bool {
	// [MQTT-4.7.2-1] a wildcard first level meets no topic beginning with $.
	fWild := f[0] == "+" || f[0] == "#"
	if fWild && !p[0].widened(v) && p[0].dollar() || p[0].wild() && strings.HasPrefix(f[0], "$") {
		return false
	}
	for i, l := range p {
		if l.kind == hashLevel || l.widened(v) {
			return true
		}
		if i >= len(f) {
			return false
		}
		switch {
		case f[i] == "#":
			return true
		case f[i] == "+" || l.kind == plusLevel:
		case !l.matchSeg(f[i], v):
			return false
		}
	}
	return len(f) == len(p) || len(f) == len(p)+1 && f[len(p)] == "#"
}
