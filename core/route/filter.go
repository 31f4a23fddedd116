package route

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ferrymq/ferry/core/route/sql92"
)

// MaxFilterLen is the longest filter expression ParseFilter accepts, in
// bytes: the longest subject the store can hold.
const MaxFilterLen = 65535

// ErrInvalidFilter is wrapped by every error ParseFilter returns; the message
// says what is wrong. Test with errors.Is.
var ErrInvalidFilter = errors.New("route: invalid filter")

// tagSep separates the tags of a tag list in its canonical form.
const tagSep = " || "

type kind uint8

const (
	kindAll   kind = iota // every message
	kindExact             // expr is the one subject that matches
	kindTags              // expr is two or more distinct sorted subjects joined by tagSep
	kindWild              // expr is an MQTT-style filter with '+' or '#'
	kindAny               // expr is two or more filters, each a kind byte and its expr, joined by anySep
	kindSQL               // expr is a SQL92 selector on the message's properties (sql.go)
)

// anySep separates the parts of a union. A union of filters that hold a NUL
// byte is not supported (MQTT forbids it in topics [MQTT-4.7.3-2]).
const anySep = "\x00"

// Filter selects messages of a topic by their subject. The zero Filter
// matches every message.
//
// Filters are comparable with ==: two filters are equal when they were
// parsed from expressions with the same canonical form (ParseFilter("b||a")
// == ParseFilter("a || b")), so a Filter can be a map key and identifies a
// subscription to remove.
type Filter struct {
	kind kind
	expr string // canonical form; "" for kindAll
}

// ParseFilter parses a subscription's filter expression:
//
//   - `*`, `#` or the empty string: every message;
//   - a tag list `a || b || c` (spaces and tabs around `||` are optional and
//     ignored): a subject equal to one of the tags;
//   - an MQTT-style filter with `+` and `#` levels: see the package
//     documentation;
//   - anything else is a subject, taken verbatim, matched exactly.
//
// Errors wrap ErrInvalidFilter: `#` not alone in the last level, `+` not
// alone in its level, a tag that is empty, `*` or holds `+` or `#`, an
// expression longer than MaxFilterLen.
func ParseFilter(expr string) (Filter, error) {
	if len(expr) > MaxFilterLen {
		return Filter{}, fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidFilter, len(expr), MaxFilterLen)
	}
	switch {
	case expr == "" || expr == "*" || expr == "#":
		return Filter{}, nil
	case strings.Contains(expr, "||"):
		return parseTags(expr)
	case !strings.ContainsAny(expr, "+#"):
		return Filter{kind: kindExact, expr: expr}, nil
	}
	for rest := expr; ; {
		level, next, more := strings.Cut(rest, "/")
		switch {
		case level == "#" && more:
			return Filter{}, invalid(expr, "'#' must be the last level") // [MQTT-4.7.1-2]
		case level == "#" || level == "+":
		case strings.Contains(level, "#"):
			return Filter{}, invalid(expr, "'#' must be a whole level") // [MQTT-4.7.1-2]
		case strings.Contains(level, "+"):
			return Filter{}, invalid(expr, "'+' must be a whole level") // [MQTT-4.7.1-3]
		}
		if !more {
			return Filter{kind: kindWild, expr: expr}, nil
		}
		rest = next
	}
}

// parseTags parses a RocketMQ tag list. Tags are trimmed, sorted and
// deduplicated, so that the canonical form does not depend on their order
// and a subscription is indexed once under each distinct tag.
func parseTags(expr string) (Filter, error) {
	tags := strings.Split(expr, "||")
	for i, t := range tags {
		t = strings.Trim(t, " \t")
		switch {
		case t == "":
			return Filter{}, invalid(expr, "empty tag in tag list")
		case t == "*":
			return Filter{}, invalid(expr, "'*' must be the whole filter, not a tag")
		case strings.ContainsAny(t, "+#"):
			return Filter{}, invalid(expr, fmt.Sprintf("wildcard in tag %q: tags are exact subjects", clip(t)))
		}
		tags[i] = t
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	if len(tags) == 1 {
		return Filter{kind: kindExact, expr: tags[0]}, nil
	}
	return Filter{kind: kindTags, expr: strings.Join(tags, tagSep)}, nil
}

func invalid(expr, why string) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidFilter, clip(expr), why)
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Exact returns the filter that matches subject and nothing else, taken
// literally: no wildcard, tag list or `*` syntax. Front-ends use it where
// ParseFilter's syntax gets in the way, notably for the empty subject (an
// MQTT subscription to `alerts` is core topic `alerts`, subject ""), which
// ParseFilter reads as "every message". Exact(s) == ParseFilter(s) for a
// subject s that ParseFilter reads as a plain subject.
//
// String returns subject, so ParseFilter(Exact(s).String()) is a different
// filter when s is "", "*" or "#", or holds "||", "+" or "#".
func Exact(subject string) Filter {
	return Filter{kind: kindExact, expr: subject}
}

// AnyOf returns the filter that matches what any of fs matches: a consumer
// with several filters on one topic (MQTT `devices/+/telemetry` and
// `devices/7/#`) reads the topic once, and gets each message once. Plain
// subjects and tag lists merge into one tag list; a filter that matches
// everything makes the union match everything. AnyOf() matches nothing.
//
// A union is for reading a topic (consumer groups); a live-routing Table
// takes only single filters (see Union).
func AnyOf(fs ...Filter) Filter {
	var tags, parts []string
	for _, f := range fs {
		switch f.kind {
		case kindAll:
			return Filter{}
		case kindExact, kindTags:
			tags = append(tags, f.Tags()...)
		case kindWild, kindSQL:
			parts = append(parts, string(rune(f.kind))+f.expr)
		case kindAny:
			if f.expr == "" {
				continue
			}
			for p := range strings.SplitSeq(f.expr, anySep) {
				if k := kind(p[0]); k == kindWild || k == kindSQL {
					parts = append(parts, p)
				} else {
					tags = append(tags, Filter{kind: kind(p[0]), expr: p[1:]}.Tags()...)
				}
			}
		}
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	switch len(tags) {
	case 0:
	case 1:
		parts = append(parts, string(rune(kindExact))+tags[0])
	default:
		parts = append(parts, string(rune(kindTags))+strings.Join(tags, tagSep))
	}
	slices.Sort(parts)
	parts = slices.Compact(parts)
	switch len(parts) {
	case 0:
		return Filter{kind: kindAny} // no part: matches nothing
	case 1:
		return Filter{kind: kind(parts[0][0]), expr: parts[0][1:]}
	}
	return Filter{kind: kindAny, expr: strings.Join(parts, anySep)}
}

// Union reports whether f came from AnyOf with two or more distinct parts.
func (f Filter) Union() bool { return f.kind == kindAny && f.expr != "" }

// All reports whether f matches every message.
func (f Filter) All() bool { return f.kind == kindAll }

// String returns the canonical form of f: "*" for every message, the tags
// sorted and joined by " || ", or the subject, MQTT-style filter or SQL92
// expression as given. For a filter from ParseFilter,
// ParseFilter(f.String()) == f; for one from ParseSQL92,
// ParseSQL92(f.String()) == f.
func (f Filter) String() string {
	switch f.kind {
	case kindAll:
		return "*"
	case kindAny:
		if f.expr == "" {
			return "(nothing)"
		}
		var b strings.Builder
		for p := range strings.SplitSeq(f.expr, anySep) {
			if b.Len() > 0 {
				b.WriteString(" , ")
			}
			b.WriteString(p[1:])
		}
		return b.String()
	}
	return f.expr
}

// Tags returns the subjects f matches exactly, sorted, when f is a tag list
// or a plain subject, and nil when f has wildcards or matches everything. The
// slice is the caller's.
func (f Filter) Tags() []string {
	switch f.kind {
	case kindExact:
		return []string{f.expr}
	case kindTags:
		return strings.Split(f.expr, tagSep)
	}
	return nil
}

// Match reports whether a message with the given subject passes f. It does
// not allocate, but for a SQL92 filter, which needs the message's
// properties (MatchMessage): Match evaluates it on the subject alone, as
// TAGS.
func (f Filter) Match(subject string) bool {
	switch f.kind {
	case kindAll:
		return true
	case kindSQL:
		return f.MatchMessage(subject, subjectOnly(subject))
	case kindExact:
		return subject == f.expr
	case kindTags:
		for rest := f.expr; ; {
			tag, next, more := strings.Cut(rest, tagSep)
			if tag == subject {
				return true
			}
			if !more {
				return false
			}
			rest = next
		}
	case kindAny:
		for rest := f.expr; rest != ""; {
			p, next, more := strings.Cut(rest, anySep)
			if (Filter{kind: kind(p[0]), expr: p[1:]}).Match(subject) {
				return true
			}
			if !more {
				return false
			}
			rest = next
		}
		return false
	}
	return matchWild(f.expr, subject)
}

// matchWild matches an MQTT-style filter against a subject, level by level.
func matchWild(filter, subject string) bool {
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		sl, srest, smore := strings.Cut(subject, "/")
		if fl != "+" && fl != sl {
			return false
		}
		switch {
		case !fmore:
			return !smore
		case !smore:
			return frest == "#" // `#` also matches its parent level (MQTT 3.1.1 §4.7.1.2)
		}
		filter, subject = frest, srest
	}
}

// WithHash returns f with the hash of each of its exact subjects computed
// once by hash, for pre-checking the subject hash a store keeps in its index
// (pass storage.SubjectHash), and its SQL92 expressions parsed once.
func (f Filter) WithHash(hash func(string) uint32) HashFilter {
	h := HashFilter{Filter: f, sql: f.compile()}
	for _, t := range f.Tags() {
		h.hashes = append(h.hashes, hash(t))
	}
	return h
}

// HashFilter is a Filter that can also judge a subject by its hash alone.
// Make one with Filter.WithHash.
type HashFilter struct {
	Filter
	hashes []uint32      // of Filter.Tags(); nil when it has none
	sql    []*sql92.Expr // Filter's SQL92 expressions, parsed (Filter.compile)
}

// MatchHash reports whether a message whose subject has hash sum may pass
// the filter: for a tag list or plain subject, whether sum is the hash of one
// of them; true when the hash cannot decide (wildcards, every message). It
// never says no to a matching subject; Match decides.
func (h HashFilter) MatchHash(sum uint32) bool {
	if h.hashes == nil {
		return true
	}
	return slices.Contains(h.hashes, sum)
}
