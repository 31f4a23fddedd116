package sql92

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Expr is a parsed selector. It is immutable and safe for concurrent use.
type Expr struct {
	src  string
	root node
}

// String returns the expression as given to Parse.
func (e *Expr) String() string { return e.src }

// Match reports whether a message with properties p is selected: the
// expression is true for it (not false, not unknown, and its evaluation did
// not fail).
func (e *Expr) Match(p Properties) bool {
	v, ok := e.root.eval(p)
	return ok && v.kind == vBool && v.b
}

// Parse parses a selector. Errors are *Error, wrap ErrSyntax and name the
// position of what is wrong, or the limit the expression is over.
func Parse(src string) (*Expr, error) {
	if len(src) > MaxLen {
		return nil, &Error{Msg: fmt.Sprintf("expression of %d bytes is longer than the limit of %d bytes", len(src), MaxLen)}
	}
	if !utf8.ValidString(src) {
		return nil, &Error{Msg: "expression is not valid UTF-8"}
	}
	p := &parser{lex: lexer{src: src}}
	for {
		t, err := p.lex.next()
		if err != nil {
			return nil, err
		}
		p.toks = append(p.toks, t)
		if t.kind == tEOF {
			break
		}
	}
	if len(p.toks) == 1 {
		return nil, &Error{Msg: "empty expression"}
	}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(0); t.kind != tEOF {
		return nil, p.errAt(t, "unexpected %s", describe(t))
	}
	root, err := p.asBoolean(n, p.toks[0])
	if err != nil {
		return nil, err
	}
	return &Expr{src: src, root: root}, nil
}

type parser struct {
	lex   lexer
	toks  []token // ends with tEOF
	at    int
	depth int
}

func (p *parser) peek(k int) token {
	if i := p.at + k; i < len(p.toks) {
		return p.toks[i]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) take() token {
	t := p.peek(0)
	if p.at < len(p.toks)-1 {
		p.at++
	}
	return t
}

func (p *parser) isOp(k int, op string) bool {
	t := p.peek(k)
	return t.kind == tOp && t.text == op
}

func (p *parser) errAt(t token, format string, args ...any) error {
	return p.lex.errAt(t.pos, format, args...)
}

func (p *parser) expectOp(op string) error {
	if t := p.take(); t.kind != tOp || t.text != op {
		return p.errAt(t, "expected %q, found %s", op, describe(t))
	}
	return nil
}

func describe(t token) string {
	switch t.kind {
	case tEOF:
		return "the end of the expression"
	case tString:
		return "string " + quote(t.text)
	}
	return fmt.Sprintf("%q", clip(t.text))
}

func quote(s string) string { return "'" + strings.ReplaceAll(clip(s), "'", "''") + "'" }

func clip(s string) string {
	const n = 32
	if len(s) <= n {
		return s
	}
	for i := n; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "..."
		}
	}
	return "..."
}

// or: and (OR and)*
func (p *parser) or() (node, error) {
	return p.chain(tOr, p.and, func(xs []node) node { return or{xs} })
}

// and: equality (AND equality)*
func (p *parser) and() (node, error) {
	return p.chain(tAnd, p.equality, func(xs []node) node { return and{xs} })
}

// chain parses operand (op operand)*: one operand alone is returned as it
// is; two or more must each be boolean, and join makes their node.
func (p *parser) chain(op tokKind, operand func() (node, error), join func([]node) node) (node, error) {
	first := p.peek(0)
	n, err := operand()
	if err != nil {
		return nil, err
	}
	if p.peek(0).kind != op {
		return n, nil
	}
	if n, err = p.asBoolean(n, first); err != nil {
		return nil, err
	}
	xs := []node{n}
	for p.peek(0).kind == op {
		p.take()
		t := p.peek(0)
		r, err := operand()
		if err != nil {
			return nil, err
		}
		if r, err = p.asBoolean(r, t); err != nil {
			return nil, err
		}
		xs = append(xs, r)
	}
	return join(xs), nil
}

// equality: comparison ( = comparison | <> comparison | IS [NOT] NULL )*
func (p *parser) equality() (node, error) {
	first := p.peek(0)
	l, err := p.comparison()
	if err != nil {
		return nil, err
	}
	for {
		switch t := p.peek(0); {
		case p.isOp(0, "=") || p.isOp(0, "<>"):
			p.take()
			rt := p.peek(0)
			r, err := p.comparison()
			if err != nil {
				return nil, err
			}
			if err := p.checkEqualOperands(l, first, r, rt); err != nil {
				return nil, err
			}
			l = compare{op: "=", l: l, r: r}
			if t.text == "<>" {
				l = not{l}
			}
		case t.kind == tIs:
			p.take()
			negated := p.peek(0).kind == tNot
			if negated {
				p.take()
			}
			if n := p.take(); n.kind != tNull {
				return nil, p.errAt(n, "expected NULL after IS, found %s", describe(n))
			}
			l = isNull{l}
			if negated {
				l = not{l}
			}
		default:
			return l, nil
		}
	}
}

// comparison: unary ( (> | >= | < | <=) unary | [NOT] BETWEEN unary AND unary
// | [NOT] IN (string, …) | [NOT] (CONTAINS | STARTSWITH | ENDSWITH) string )*
func (p *parser) comparison() (node, error) {
	first := p.peek(0)
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek(0)
		negated := false
		if t.kind == tNot {
			switch p.peek(1).kind {
			case tBetween, tIn, tContains, tStartsWith, tEndsWith:
				negated = true
				p.take()
				t = p.peek(0)
			default:
				return l, nil
			}
		}
		switch {
		case t.kind == tOp && (t.text == "<" || t.text == "<=" || t.text == ">" || t.text == ">="):
			p.take()
			rt := p.peek(0)
			r, err := p.unary()
			if err != nil {
				return nil, err
			}
			if err := p.checkOrdered(l, first); err != nil {
				return nil, err
			}
			if err := p.checkOrdered(r, rt); err != nil {
				return nil, err
			}
			l = compare{op: t.text, l: l, r: r}
		case t.kind == tBetween:
			p.take()
			lowT := p.peek(0)
			low, err := p.unary()
			if err != nil {
				return nil, err
			}
			if a := p.take(); a.kind != tAnd {
				return nil, p.errAt(a, "expected AND in BETWEEN, found %s", describe(a))
			}
			highT := p.peek(0)
			high, err := p.unary()
			if err != nil {
				return nil, err
			}
			for _, o := range []struct {
				n node
				t token
			}{{l, first}, {low, lowT}, {high, highT}} {
				if err := p.checkOrdered(o.n, o.t); err != nil {
					return nil, err
				}
			}
			if negated {
				l = or{[]node{compare{op: "<", l: l, r: low}, compare{op: ">", l: l, r: high}}}
				continue
			}
			lo, lok := low.(literal)
			hi, hok := high.(literal)
			if c, ok := order(hi.v, lo.v); lok && hok && ok && c < 0 {
				return nil, p.errAt(lowT, "BETWEEN's lower bound %s is greater than its upper bound %s", literalText(lo.v), literalText(hi.v))
			}
			l = and{[]node{compare{op: ">=", l: l, r: low}, compare{op: "<=", l: l, r: high}}}
		case t.kind == tIn:
			p.take()
			if _, ok := l.(property); !ok {
				return nil, p.errAt(first, "IN needs a property on its left")
			}
			if err := p.expectOp("("); err != nil {
				return nil, err
			}
			set := map[string]struct{}{}
			for {
				s := p.take()
				if s.kind != tString {
					return nil, p.errAt(s, "IN takes string literals, found %s", describe(s))
				}
				set[s.text] = struct{}{}
				if p.isOp(0, ")") {
					p.take()
					break
				}
				if err := p.expectOp(","); err != nil {
					return nil, err
				}
			}
			l = in{x: l, set: set, not: negated}
		case t.kind == tContains || t.kind == tStartsWith || t.kind == tEndsWith:
			p.take()
			s := p.take()
			if s.kind != tString {
				return nil, p.errAt(s, "%s takes a string literal, found %s", strings.ToUpper(t.text), describe(s))
			}
			l = textTest{x: l, op: t.kind, search: s.text, not: negated}
		default:
			return l, nil
		}
	}
}

// unary: + unary | - unary | NOT unary | primary
func (p *parser) unary() (node, error) {
	t := p.peek(0)
	if !(t.kind == tNot || p.isOp(0, "-") || p.isOp(0, "+")) {
		return p.primary()
	}
	if err := p.deeper(t); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	p.take()
	xt := p.peek(0)
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	switch {
	case t.kind == tNot:
		x, err := p.asBoolean(x, xt)
		if err != nil {
			return nil, err
		}
		return not{x}, nil
	case t.text == "+":
		return x, nil
	}
	if lit, ok := x.(literal); ok {
		switch lit.v.kind {
		case vLong:
			lit.v.i = -lit.v.i
			return lit, nil
		case vDouble:
			lit.v.f = -lit.v.f
			return lit, nil
		}
		return nil, p.errAt(xt, "only a number can be negated, not %s", describe(xt))
	}
	return negate{x}, nil
}

// primary: literal | property | ( or )
func (p *parser) primary() (node, error) {
	t := p.take()
	switch t.kind {
	case tString:
		return literal{value{kind: vString, s: t.text}}, nil
	case tLong:
		i, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			return nil, p.errAt(t, "integer %s is out of range of a long", clip(t.text))
		}
		return literal{value{kind: vLong, i: i}}, nil
	case tDouble:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil && math.IsInf(f, 0) {
			return nil, p.errAt(t, "number %s is out of range of a double", clip(t.text))
		}
		return literal{value{kind: vDouble, f: f}}, nil
	case tTrue:
		return literal{vtrue}, nil
	case tFalse:
		return literal{vfalse}, nil
	case tNull:
		return literal{null}, nil
	case tIdent:
		return property{t.text}, nil
	case tOp:
		if t.text == "(" {
			if err := p.deeper(t); err != nil {
				return nil, err
			}
			defer func() { p.depth-- }()
			n, err := p.or()
			if err != nil {
				return nil, err
			}
			if err := p.expectOp(")"); err != nil {
				return nil, err
			}
			return n, nil
		}
	}
	return nil, p.errAt(t, "expected a value, a property or '(', found %s", describe(t))
}

func (p *parser) deeper(t token) error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errAt(t, "nested deeper than the limit of %d", MaxDepth)
	}
	return nil
}

// asBoolean checks that n is a condition (RocketMQ's BooleanExpression); a
// property there is read as a boolean.
func (p *parser) asBoolean(n node, t token) (node, error) {
	switch n := n.(type) {
	case property:
		return boolCast{n}, nil
	case literal:
		if n.v.kind == vBool || n.v.kind == vNull {
			return n, nil
		}
	case negate:
	default:
		return n, nil
	}
	return nil, p.errAt(t, "not a condition: %s is not true or false", exprText(n, t))
}

// checkOrdered checks an operand of <, <=, >, >= or BETWEEN: a number
// literal, a property or a negation; not a string, boolean or condition.
func (p *parser) checkOrdered(n node, t token) error {
	switch n := n.(type) {
	case property, negate:
		return nil
	case literal:
		if n.v.kind == vLong || n.v.kind == vDouble {
			return nil
		}
		return p.errAt(t, "%s cannot be compared by <, <=, >, >= or BETWEEN: only numbers can", literalText(n.v))
	}
	return p.errAt(t, "a condition cannot be compared by <, <=, >, >= or BETWEEN")
}

// checkEqualOperands checks the operands of = and <>: not NULL (IS NULL
// says that), and not a boolean literal against another literal.
func (p *parser) checkEqualOperands(l node, lt token, r node, rt token) error {
	ll, lok := l.(literal)
	rl, rok := r.(literal)
	switch {
	case lok && ll.v.kind == vNull:
		return p.errAt(lt, "NULL cannot be compared by = or <>: use IS NULL")
	case rok && rl.v.kind == vNull:
		return p.errAt(rt, "NULL cannot be compared by = or <>: use IS NULL")
	case lok && rok && (ll.v.kind == vBool) != (rl.v.kind == vBool):
		return p.errAt(lt, "%s cannot be compared with %s", literalText(ll.v), literalText(rl.v))
	}
	return nil
}

func literalText(v value) string {
	switch v.kind {
	case vNull:
		return "NULL"
	case vBool:
		return strings.ToUpper(strconv.FormatBool(v.b))
	case vLong:
		return strconv.FormatInt(v.i, 10)
	case vDouble:
		return strconv.FormatFloat(v.f, 'g', -1, 64)
	}
	return quote(v.s)
}

func exprText(n node, t token) string {
	if l, ok := n.(literal); ok {
		return literalText(l.v)
	}
	return "the expression at " + describe(t)
}
