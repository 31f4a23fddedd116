package sql92

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on what Parse accepts: the expression comes from a client.
const (
	// MaxLen is the longest expression Parse accepts, in bytes.
	MaxLen = 16 << 10
	// MaxDepth is the deepest nesting Parse accepts: parentheses and
	// prefix operators (NOT, -, +) inside one another.
	MaxDepth = 64
)

// ErrSyntax is wrapped by every error Parse returns; test with errors.Is.
// The error is a *Error, which has the position.
var ErrSyntax = errors.New("sql92: invalid expression")

// Error is a refused expression: what is wrong, and where.
type Error struct {
	Pos int    // 1-based, in characters; 0 when the whole expression is at fault
	Msg string // what is wrong
}

func (e *Error) Error() string {
	if e.Pos == 0 {
		return fmt.Sprintf("%v: %s", ErrSyntax, e.Msg)
	}
	return fmt.Sprintf("%v at position %d: %s", ErrSyntax, e.Pos, e.Msg)
}

func (e *Error) Unwrap() error { return ErrSyntax }

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tString // text is the decoded value
	tLong
	tDouble
	tOp // text is one of = <> < <= > >= ( ) , + -
	// keywords; text is as written
	tNot
	tAnd
	tOr
	tBetween
	tIn
	tTrue
	tFalse
	tNull
	tIs
	tContains
	tStartsWith
	tEndsWith
)

var keywords = map[string]tokKind{
	"NOT": tNot, "AND": tAnd, "OR": tOr, "BETWEEN": tBetween, "IN": tIn,
	"TRUE": tTrue, "FALSE": tFalse, "NULL": tNull, "IS": tIs,
	"CONTAINS": tContains, "STARTSWITH": tStartsWith, "ENDSWITH": tEndsWith,
}

type token struct {
	kind tokKind
	text string
	pos  int // byte offset in the source
}

// lexer splits the source into tokens, one at a time.
type lexer struct {
	src string
	off int
}

func (l *lexer) errAt(off int, format string, args ...any) error {
	return &Error{Pos: utf8.RuneCountInString(l.src[:off]) + 1, Msg: fmt.Sprintf(format, args...)}
}

// next returns the next token, skipping white space and comments.
func (l *lexer) next() (token, error) {
	if err := l.skip(); err != nil {
		return token{}, err
	}
	start := l.off
	if start == len(l.src) {
		return token{kind: tEOF, pos: start}, nil
	}
	c := l.src[start]
	switch {
	case isIdentStart(c):
		for l.off < len(l.src) && isIdentPart(l.src[l.off]) {
			l.off++
		}
		word := l.src[start:l.off]
		if k, ok := keywords[strings.ToUpper(word)]; ok {
			return token{kind: k, text: word, pos: start}, nil
		}
		return token{kind: tIdent, text: word, pos: start}, nil
	case isDigit(c) || c == '.' && start+1 < len(l.src) && isDigit(l.src[start+1]):
		return l.number()
	case c == '\'':
		return l.str()
	}
	l.off++
	switch c {
	case '<':
		if l.off < len(l.src) && (l.src[l.off] == '=' || l.src[l.off] == '>') {
			l.off++
		}
	case '>':
		if l.off < len(l.src) && l.src[l.off] == '=' {
			l.off++
		}
	case '=', '(', ')', ',', '+', '-':
	default:
		r, _ := utf8.DecodeRuneInString(l.src[start:])
		return token{}, l.errAt(start, "unexpected character %q", r)
	}
	return token{kind: tOp, text: l.src[start:l.off], pos: start}, nil
}

// skip passes over white space, `--` line comments and `/* */` comments.
func (l *lexer) skip() error {
	for l.off < len(l.src) {
		switch c := l.src[l.off]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			l.off++
		case strings.HasPrefix(l.src[l.off:], "--"):
			end := strings.IndexAny(l.src[l.off:], "\r\n")
			if end < 0 {
				l.off = len(l.src)
			} else {
				l.off += end
			}
		case strings.HasPrefix(l.src[l.off:], "/*"):
			end := strings.Index(l.src[l.off+2:], "*/")
			if end < 0 {
				return l.errAt(l.off, "comment not closed")
			}
			l.off += 2 + end + 2
		default:
			return nil
		}
	}
	return nil
}

// number lexes RocketMQ's DECIMAL_LITERAL (`0` or a digit string without a
// leading zero, an optional L) or FLOATING_POINT_LITERAL (digits with a
// point or an exponent); the value is read by the parser.
func (l *lexer) number() (token, error) {
	start := l.off
	digits := func() int {
		n := 0
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.off++
			n++
		}
		return n
	}
	exponent := func() bool {
		if l.off < len(l.src) && (l.src[l.off] == 'e' || l.src[l.off] == 'E') {
			save := l.off
			l.off++
			if l.off < len(l.src) && (l.src[l.off] == '+' || l.src[l.off] == '-') {
				l.off++
			}
			if digits() > 0 {
				return true
			}
			l.off = save
		}
		return false
	}
	intDigits := digits()
	isFloat := false
	if l.off < len(l.src) && l.src[l.off] == '.' {
		l.off++
		digits()
		isFloat = true
	}
	if exponent() {
		isFloat = true
	}
	if isFloat {
		return token{kind: tDouble, text: l.src[start:l.off], pos: start}, nil
	}
	if intDigits > 1 && l.src[start] == '0' { // "0" | [1-9][0-9]*
		l.off = start + 1
	}
	text := l.src[start:l.off]
	if l.off < len(l.src) && (l.src[l.off] == 'l' || l.src[l.off] == 'L') {
		l.off++
	}
	return token{kind: tLong, text: text, pos: start}, nil
}

// str lexes a string literal; ” inside it is one quote.
func (l *lexer) str() (token, error) {
	start := l.off
	var b strings.Builder
	l.off++
	for {
		i := strings.IndexByte(l.src[l.off:], '\'')
		if i < 0 {
			return token{}, l.errAt(start, "string not closed")
		}
		b.WriteString(l.src[l.off : l.off+i])
		l.off += i + 1
		if l.off < len(l.src) && l.src[l.off] == '\'' {
			b.WriteByte('\'')
			l.off++
			continue
		}
		return token{kind: tString, text: b.String(), pos: start}, nil
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '$'
}
func isIdentPart(c byte) bool { return isIdentStart(c) || isDigit(c) }
