package route

import (
	"fmt"
	"strings"

	"github.com/ferrymq/ferry/core/route/sql92"
)

// Properties gives a message's property values to a SQL92 filter; ok is
// false when the message has no property of that name.
type Properties = sql92.Properties

// ParseSQL92 parses a RocketMQ SQL92 selector (expression type "SQL92",
// `MessageSelector.bySql`): a condition on the message's properties, such
// as `a > 5 AND region IN ('eu','us')`. See package sql92 for the grammar,
// its semantics and its limits. Errors wrap ErrInvalidFilter and
// sql92.ErrSyntax, and name the position of the fault or the limit hit.
//
// The filter's String is the expression as given; two filters are equal
// when their expressions are. The subject index cannot judge such a filter
// (MatchHash always says maybe): it is decided per message, by
// MatchMessage, on the properties MessageProperties gives.
func ParseSQL92(expr string) (Filter, error) {
	if strings.Contains(expr, anySep) {
		return Filter{}, invalid(expr, "a SQL92 filter cannot hold a NUL byte")
	}
	if _, err := sql92.Parse(expr); err != nil {
		return Filter{}, fmt.Errorf("%w: %w", ErrInvalidFilter, err)
	}
	return Filter{kind: kindSQL, expr: expr}, nil
}

// SQL92 reports whether f is, or has among the filters of its union, a
// SQL92 selector: it needs the message's properties (MatchMessage), and a
// live-routing Table cannot take it.
func (f Filter) SQL92() bool {
	switch f.kind {
	case kindSQL:
		return true
	case kindAny:
		for p := range strings.SplitSeq(f.expr, anySep) {
			if p != "" && kind(p[0]) == kindSQL {
				return true
			}
		}
	}
	return false
}

// MessageProperties are the properties a SQL92 filter sees of a message,
// as RocketMQ's broker shows them: its properties, and TAGS (the subject)
// and KEYS (the keys, joined by spaces) when it has them. props, when not
// nil, looks its own properties up.
func MessageProperties(subject string, keys []string, props Properties) Properties {
	return func(name string) (string, bool) {
		if props != nil {
			if v, ok := props(name); ok {
				return v, true
			}
		}
		switch {
		case name == "TAGS" && subject != "":
			return subject, true
		case name == "KEYS" && len(keys) > 0:
			return strings.Join(keys, " "), true
		}
		return "", false
	}
}

// MatchMessage reports whether a message passes f, given its subject and
// its properties (MessageProperties): a SQL92 filter is decided on the
// properties, any other on the subject. It parses f's SQL92 expressions on
// each call; for many messages, use WithHash once and its MatchMessage.
func (f Filter) MatchMessage(subject string, props Properties) bool {
	return HashFilter{Filter: f, sql: f.compile()}.MatchMessage(subject, props)
}

// compile parses the SQL92 expressions of f, in their order in f.expr.
// They parsed when f was made, so parsing cannot fail; an expression that
// did would be nil and match nothing.
func (f Filter) compile() []*sql92.Expr {
	var out []*sql92.Expr
	switch f.kind {
	case kindSQL:
		e, _ := sql92.Parse(f.expr)
		out = append(out, e)
	case kindAny:
		for p := range strings.SplitSeq(f.expr, anySep) {
			if p != "" && kind(p[0]) == kindSQL {
				e, _ := sql92.Parse(p[1:])
				out = append(out, e)
			}
		}
	}
	return out
}

// MatchMessage is Filter.MatchMessage with f's SQL92 expressions parsed
// once, by WithHash.
func (h HashFilter) MatchMessage(subject string, props Properties) bool {
	switch h.kind {
	case kindSQL:
		return h.sql[0] != nil && h.sql[0].Match(props)
	case kindAny:
		i := 0
		for p := range strings.SplitSeq(h.expr, anySep) {
			if p == "" {
				continue
			}
			part := Filter{kind: kind(p[0]), expr: p[1:]}
			if part.kind == kindSQL {
				e := h.sql[i]
				i++
				if e != nil && e.Match(props) {
					return true
				}
			} else if part.Match(subject) {
				return true
			}
		}
		return false
	}
	return h.Filter.Match(subject)
}

// subjectOnly is what a SQL92 filter sees of a message known by its
// subject alone (Filter.Match): TAGS.
func subjectOnly(subject string) Properties {
	return MessageProperties(subject, nil, nil)
}
