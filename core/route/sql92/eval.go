package sql92

import (
	"cmp"
	"errors"
	"strconv"
	"strings"
)

// vkind is the type of a value; vNull is SQL's NULL (unknown).
type vkind uint8

const (
	vNull vkind = iota
	vBool
	vLong
	vDouble
	vString
)

type value struct {
	kind vkind
	b    bool
	i    int64
	f    float64
	s    string
}

var (
	null   = value{}
	vtrue  = value{kind: vBool, b: true}
	vfalse = value{kind: vBool}
)

func boolean(b bool) value {
	if b {
		return vtrue
	}
	return vfalse
}

// Properties gives a message's property values: ok is false when the
// message has no property of that name.
type Properties func(name string) (value string, ok bool)

// node is an expression. eval returns its value, or ok false when the
// evaluation fails (a value that is not the number it is compared with):
// RocketMQ's broker then takes the whole expression as false.
type node interface {
	eval(p Properties) (v value, ok bool)
}

type (
	literal  struct{ v value }
	property struct{ name string }
	// boolCast is a property where a boolean is expected (`a AND b`):
	// unknown when missing, false otherwise (its value is a string).
	boolCast struct{ x node }
	negate   struct{ x node }
	not      struct{ x node }
	and      struct{ xs []node }
	or       struct{ xs []node }
	compare  struct {
		op   string // = < <= > >=; <> is NOT over =
		l, r node
	}
	isNull struct{ x node }
	in     struct {
		x   node
		set map[string]struct{}
		not bool
	}
	// textTest is [NOT] CONTAINS, STARTSWITH or ENDSWITH.
	textTest struct {
		x      node
		op     tokKind
		search string
		not    bool
	}
)

func (n literal) eval(Properties) (value, bool) { return n.v, true }

func (n property) eval(p Properties) (value, bool) {
	s, ok := p(n.name)
	if !ok {
		return null, true
	}
	return value{kind: vString, s: s}, true
}

func (n boolCast) eval(p Properties) (value, bool) {
	v, ok := n.x.eval(p)
	switch {
	case !ok || v.kind == vNull:
		return null, ok
	case v.kind != vBool:
		return vfalse, true
	}
	return v, true
}

func (n negate) eval(p Properties) (value, bool) {
	v, ok := n.x.eval(p)
	switch v.kind {
	case vLong:
		v.i = -v.i
	case vDouble:
		v.f = -v.f
	default: // not a number (a property's string): unknown
		return null, ok
	}
	return v, ok
}

func (n not) eval(p Properties) (value, bool) {
	v, ok := n.x.eval(p)
	switch {
	case !ok || v.kind == vNull:
		return null, ok
	case v.kind != vBool:
		return null, false
	}
	return boolean(!v.b), true
}

// eval of AND: false as soon as an operand is false (the rest is not
// evaluated), else unknown if one was unknown, else true.
func (n and) eval(p Properties) (value, bool) { return connective(n.xs, p, false) }

// eval of OR: true as soon as an operand is true, else unknown if one was
// unknown, else false.
func (n or) eval(p Properties) (value, bool) { return connective(n.xs, p, true) }

// connective evaluates AND (decisive false) and OR (decisive true) under
// SQL's three-valued logic: the first operand equal to decisive ends the
// evaluation with it; otherwise the result is unknown if an operand was
// unknown, else !decisive.
func connective(xs []node, p Properties, decisive bool) (value, bool) {
	unknown := false
	for _, x := range xs {
		v, ok := x.eval(p)
		switch {
		case !ok:
			return null, false
		case v.kind == vBool && v.b == decisive:
			return boolean(decisive), true
		case v.kind != vBool:
			unknown = true
		}
	}
	if unknown {
		return null, true
	}
	return boolean(!decisive), true
}

func (n compare) eval(p Properties) (value, bool) {
	l, ok := n.l.eval(p)
	if !ok {
		return null, false
	}
	r, ok := n.r.eval(p)
	if !ok {
		return null, false
	}
	if n.op == "=" {
		switch {
		case l.kind == vNull && r.kind == vNull:
			return vtrue, true
		case l.kind == vNull || r.kind == vNull:
			if l.kind == vNull {
				return null, true
			}
			return vfalse, true
		}
		c, ok := order(l, r)
		return boolean(c == 0), ok
	}
	if l.kind == vNull || r.kind == vNull {
		return null, true
	}
	if l.kind == vString && r.kind == vString { // two properties: as doubles
		lf, lok := parseDouble(l.s)
		rf, rok := parseDouble(r.s)
		if !lok || !rok {
			return null, false
		}
		l, r = value{kind: vDouble, f: lf}, value{kind: vDouble, f: rf}
	}
	c, ok := order(l, r)
	switch n.op {
	case "<":
		return boolean(c < 0), ok
	case "<=":
		return boolean(c <= 0), ok
	case ">":
		return boolean(c > 0), ok
	}
	return boolean(c >= 0), ok
}

// order compares two values that are not NULL, converting one to the
// other's type as RocketMQ does: a long to a double, a string to the number
// or boolean it is compared with. Values that cannot be compared (a boolean
// and a number) order as less, as in RocketMQ; ok is false when a string
// is not the number it is compared with.
func order(l, r value) (c int, ok bool) {
	if l.kind != r.kind {
		switch {
		case l.kind == vBool && r.kind == vString:
			r = value{kind: vBool, b: strings.EqualFold(r.s, "true")}
		case l.kind == vString && r.kind == vBool:
			l = value{kind: vBool, b: strings.EqualFold(l.s, "true")}
		case l.kind == vBool || r.kind == vBool:
			return -1, true
		case l.kind == vString:
			if l, ok = toNumber(l.s, r.kind); !ok {
				return 0, false
			}
		case r.kind == vString:
			if r, ok = toNumber(r.s, l.kind); !ok {
				return 0, false
			}
		}
		if l.kind == vLong && r.kind == vDouble {
			l = value{kind: vDouble, f: float64(l.i)}
		} else if l.kind == vDouble && r.kind == vLong {
			r = value{kind: vDouble, f: float64(r.i)}
		}
	}
	switch l.kind {
	case vBool:
		return cmpBool(l.b, r.b), true
	case vLong:
		return cmp.Compare(l.i, r.i), true
	case vDouble:
		return cmp.Compare(l.f, r.f), true
	}
	return strings.Compare(l.s, r.s), true
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case b:
		return -1
	}
	return 1
}

// toNumber reads a property's string as a number of kind k (vLong or
// vDouble), as Java's Long.valueOf and Double.valueOf do.
func toNumber(s string, k vkind) (value, bool) {
	if k == vLong {
		i, err := strconv.ParseInt(s, 10, 64)
		return value{kind: vLong, i: i}, err == nil
	}
	f, ok := parseDouble(s)
	return value{kind: vDouble, f: f}, ok
}

// parseDouble reads a decimal number as Java's Double.valueOf does: white
// space around it is trimmed, and a number too large is an infinity.
func parseDouble(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "_") { // Go-only syntax
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil || errors.Is(err, strconv.ErrRange)
}

func (n isNull) eval(p Properties) (value, bool) {
	v, ok := n.x.eval(p)
	return boolean(v.kind == vNull), ok
}

func (n in) eval(p Properties) (value, bool) {
	v, ok := n.x.eval(p)
	if !ok || v.kind != vString {
		return null, ok
	}
	_, found := n.set[v.s]
	return boolean(found != n.not), true
}

func (n textTest) eval(p Properties) (value, bool) {
	v, ok := n.x.eval(p)
	if !ok {
		return null, false
	}
	if n.search == "" || v.kind != vString {
		return vfalse, true
	}
	var found bool
	switch n.op {
	case tContains:
		found = strings.Contains(v.s, n.search)
	case tStartsWith:
		found = strings.HasPrefix(v.s, n.search)
	default:
		found = strings.HasSuffix(v.s, n.search)
	}
	return boolean(found != n.not), true
}
