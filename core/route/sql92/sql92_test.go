package sql92

import (
	"errors"
	"strings"
	"testing"
)

func props(kv ...string) Properties {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// TestMatch runs expressions against messages, on RocketMQ's semantics:
// properties are strings read as the numbers they are compared with, a
// missing property makes a comparison unknown (neither it nor its NOT
// matches), and a failed conversion makes the whole expression false.
func TestMatch(t *testing.T) {
	msg := props("a", "10", "b", "2.5", "region", "eu", "TAGS", "tagA", "name", "O'Neil", "flag", "TRUE", "neg", "-3", "s", "abc")
	for _, c := range []struct {
		expr string
		want bool
	}{
		{"a > 5", true},
		{"a > 10", false},
		{"a >= 10", true},
		{"a < 10.5", true},
		{"a <= 9", false},
		{"a = 10", true},
		{"a = 10.0", true}, // the string read as a double
		{"a = '10'", true},
		{"a = '10.0'", false}, // two strings compare as strings
		{"a <> 10", false},
		{"a <> 11", true},
		{"5 < a", true},
		{"b > 2", false}, // "2.5" is no long: the whole expression is false
		{"b > 2 OR a = 10", false},
		{"b > 2.0", true},
		{"a > b", true}, // two properties: as doubles
		{"neg < 0", true},
		{"neg = -3", true},
		{"-a < 0", false}, // a negated string is unknown
		{"a BETWEEN 1 AND 10", true},
		{"a BETWEEN 11 AND 20", false},
		{"a NOT BETWEEN 11 AND 20", true},
		{"a NOT BETWEEN 1 AND 20", false},
		{"region IN ('eu', 'us')", true},
		{"region IN ('us')", false},
		{"region NOT IN ('us', 'ap')", true},
		{"region NOT IN ('eu')", false},
		{"region = 'eu' AND a > 5", true},
		{"region = 'us' OR a > 5", true},
		{"region = 'us' OR a > 50", false},
		{"name = 'O''Neil'", true},
		{"TAGS = 'tagA'", true},
		{"flag = TRUE", true},
		{"flag = FALSE", false},
		{"TRUE", true},
		{"FALSE", false},
		{"NOT FALSE", true},
		{"NOT (a = 10)", false},
		{"NOT (a = 11)", true},
		{"NOT a = 10", false}, // (NOT a) = 10, as RocketMQ parses it
		{"a", false},          // a present property read as a boolean
		{"s CONTAINS 'b'", true},
		{"s NOT CONTAINS 'b'", false},
		{"s STARTSWITH 'ab'", true},
		{"s ENDSWITH 'bc'", true},
		{"s NOT ENDSWITH 'x'", true},
		{"s CONTAINS ''", false},
		{"s = 'abc' -- a comment\n AND a = 10", true},
		{"/* c */ s = 'abc'", true},
		{"x = 1 OR TRUE", true},
		{"a = 10l", true},
		{"a = 1e1", true},
		{"(a > 5) = TRUE", true},
		{"s is not null and S is null", true},
		{"((((a > 5))))", true},
		// a missing property: unknown, and so is its NOT
		{"x = 1", false},
		{"x <> 1", false},
		{"NOT (x = 1)", false},
		{"x > 1", false},
		{"x BETWEEN 1 AND 2", false},
		{"x NOT BETWEEN 1 AND 2", false},
		{"x IN ('a')", false},
		{"x NOT IN ('a')", false},
		{"x CONTAINS 'a'", false},
		{"x NOT CONTAINS 'a'", false},
		{"x IS NULL", true},
		{"x IS NOT NULL", false},
		{"a IS NULL", false},
		{"x = 1 AND FALSE", false},
		{"NOT (x = 1 AND FALSE)", true}, // unknown AND false is false
		{"NOT (x = 1 OR TRUE)", false},
		{"NOT (x = 1 OR FALSE)", false}, // unknown
		{"x", false},
		{"NOT x", false},
		{"NULL", false},
	} {
		e, err := Parse(c.expr)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.expr, err)
			continue
		}
		if got := e.Match(msg); got != c.want {
			t.Errorf("%q: Match = %v, want %v", c.expr, got, c.want)
		}
		if e.String() != c.expr {
			t.Errorf("%q: String = %q", c.expr, e.String())
		}
	}
}

// TestParseErrors: what RocketMQ refuses is refused, with the position of
// the fault.
func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		expr, want string
	}{
		{"", "empty expression"},
		{"   ", "empty expression"},
		{"a >", "position 4: expected a value"},
		{"a > 'x'", "position 5: 'x' cannot be compared"},
		{"a > TRUE", "position 5: TRUE cannot be compared"},
		{"'x' < a", "position 1: 'x' cannot be compared"},
		{"(a = 1) > 2", "position 1: a condition cannot be compared"},
		{"a = NULL", "position 5: NULL cannot be compared by = or <>"},
		{"TRUE = 1", "position 1: TRUE cannot be compared with 1"},
		{"a BETWEEN 5 AND 1", "position 11: BETWEEN's lower bound 5 is greater than its upper bound 1"},
		{"a BETWEEN 1 OR 5", "position 13: expected AND in BETWEEN"},
		{"1 IN ('a')", "position 1: IN needs a property"},
		{"a IN (1, 2)", "position 7: IN takes string literals"},
		{"a IN ('x' 'y')", `position 11: expected ","`},
		{"a IN ()", "position 7: IN takes string literals"},
		{"a = 'x", "position 5: string not closed"},
		{"a = 1 /* x", "position 7: comment not closed"},
		{"a = 1 AND", "position 10: expected a value"},
		{"a = 1 b = 2", `position 7: unexpected "b"`},
		{"a == 1", "position 4: expected a value"},
		{"a = 1 # x", "position 7: unexpected character '#'"},
		{"é = 1", "position 1: unexpected character 'é'"},
		{"a = 1 AND 'x'", "position 11: not a condition: 'x' is not true or false"},
		{"5", "position 1: not a condition: 5"},
		{"NOT 5", "position 5: not a condition"},
		{"a = 99999999999999999999", "position 5: integer 99999999999999999999 is out of range"},
		{"a = 1e999", "position 5: number 1e999 is out of range"},
		{"a = -'x'", "position 6: only a number can be negated"},
		{"a IS 1", "position 6: expected NULL after IS"},
		{"a CONTAINS b", "position 12: CONTAINS takes a string literal"},
		{"(a = 1", `position 7: expected ")", found the end of the expression`},
		{"a = 01", `position 6: unexpected "1"`},
		{strings.Repeat("(", MaxDepth+1) + "a" + strings.Repeat(")", MaxDepth+1), "nested deeper than the limit of 64"},
		{strings.Repeat("NOT ", MaxDepth+1) + "a", "nested deeper than the limit of 64"},
		{"a = '" + strings.Repeat("x", MaxLen) + "'", "longer than the limit of 16384 bytes"},
		{"a = '\xff'", "not valid UTF-8"},
	} {
		_, err := Parse(c.expr)
		if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%.40q) = %v, want an error with %q", c.expr, err, c.want)
		}
		var pe *Error
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("Parse(%.40q): %T is not *Error", c.expr, err)
		}
	}
	// at the limits exactly: accepted
	for _, ok := range []string{
		strings.Repeat("(", MaxDepth) + "a = 1" + strings.Repeat(")", MaxDepth),
		"a = '" + strings.Repeat("x", MaxLen-6) + "'",
	} {
		if _, err := Parse(ok); err != nil {
			t.Errorf("Parse at the limit: %v", err)
		}
	}
}

// FuzzParse parses anything: no panic, errors are *Error with a position
// inside the expression, and what parses evaluates without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a > 5 AND region IN ('eu','us')", "a BETWEEN 1 AND 2", "NOT (b IS NULL)",
		"a = 'x''y'", "-a < -5.5e3", "/* */ a -- x", "a NOT CONTAINS 'z'", "((a))",
		"TRUE OR x = 1", "a <> b", "1.e5", ".5", "0L", "a = 1 = TRUE",
	} {
		f.Add(s, "10", "eu")
	}
	f.Fuzz(func(t *testing.T, expr, a, region string) {
		e, err := Parse(expr)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Pos < 0 || pe.Pos > len([]rune(expr))+1 {
				t.Fatalf("Parse(%q): %v (position out of the expression)", expr, err)
			}
			return
		}
		e.Match(props("a", a, "region", region, "b", a))
		e.Match(props())
	})
}
