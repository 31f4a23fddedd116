package route

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// fnv1a is the store's subject hash (storage.SubjectHash), copied so these
// tests do not depend on the storage package.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func TestFilterMatch(t *testing.T) {
	tests := []struct {
		filter  string
		subject string
		want    bool
	}{
		// every message
		{"*", "", true},
		{"*", "a/b", true},
		{"", "x", true},
		{"#", "", true},
		{"#", "/a", true},
		{"#", "a/b/c", true},

		// plain subjects: exact
		{"a", "a", true},
		{"a", "a/b", false},
		{"a", "", false},
		{"a", "A", false},
		{"a/b", "a/b", true},
		{"a/b", "a/b/", false},
		{"a//b", "a//b", true},
		{"a//b", "a/b", false},
		{"/a", "/a", true},
		{"/a", "a", false},
		{"a/", "a/", true},
		{"a*", "a*", true},
		{"a/*", "a/x", false}, // '*' is only special as the whole filter
		{"a|b", "a|b", true},  // one '|' is not a tag separator

		// tag lists
		{"a || b", "b", true},
		{"a||b", "a", true},
		{"a || b", "c", false},
		{"a || b", "a/b", false},
		{"a/b || c", "a/b", true},
		{"a/b || c", "a", false},
		{" a ||\tb ", "a", true},
		{"x || y || z", "z", true},
		{"x || y || z", "x || y", false},

		// '+': exactly one level, empty or not
		{"+", "a", true},
		{"+", "", true},
		{"+", "a/b", false},
		{"+", "/", false},
		{"+/+", "/", true},
		{"+/+", "a", false},
		{"+/telemetry", "42/telemetry", true},
		{"+/telemetry", "/telemetry", true},
		{"+/telemetry", "telemetry", false},
		{"+/telemetry", "a/b/telemetry", false},
		{"a/+/b", "a//b", true},
		{"a/+/b", "a/b", false},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"/+", "/a", true},
		{"/+", "/a/b", false},
		{"/+", "a", false},
		{"+/+/+", "a/b/c", true},

		// '#': any number of levels, including none
		{"42/#", "42", true},
		{"42/#", "42/x", true},
		{"42/#", "42/x/y", true},
		{"42/#", "4", false},
		{"42/#", "42x", false},
		{"42/#", "", false},
		{"42/#", "x/42", false},
		{"a/#", "a/", true},
		{"/#", "/", true},
		{"/#", "/a", true},
		{"/#", "", true}, // "" is one empty level, and '#' matches its parent
		{"/#", "a", false},
		{"+/#", "", true},
		{"+/#", "a/b/c", true},
		{"a/+/#", "a", false},
		{"a/+/#", "a/x", true},
		{"a/+/#", "a/x/y/z", true},
		{"a/+/#", "b/x", false},
	}
	for _, tc := range tests {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q): %v", tc.filter, err)
		}
		if got := f.Match(tc.subject); got != tc.want {
			t.Errorf("ParseFilter(%q).Match(%q) = %v, want %v", tc.filter, tc.subject, got, tc.want)
		}
		// The table agrees with the filter.
		var tbl Table[int]
		tbl.Add("t", f, 1)
		n := 0
		tbl.Match("t", tc.subject, func(int) { n++ })
		if want := map[bool]int{false: 0, true: 1}[tc.want]; n != want {
			t.Errorf("Table with %q: Match(%q) called fn %d times, want %d", tc.filter, tc.subject, n, want)
		}
		// The hash never rules out a match.
		if tc.want && !f.WithHash(fnv1a).MatchHash(fnv1a(tc.subject)) {
			t.Errorf("ParseFilter(%q).MatchHash(hash(%q)) = false for a match", tc.filter, tc.subject)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	tests := []struct {
		filter string
		want   string // in the message
	}{
		{"a/b#", "'#' must be a whole level"},
		{"a#", "'#' must be a whole level"},
		{"##", "'#' must be a whole level"},
		{"#/a", "'#' must be the last level"},
		{"a/#/b", "'#' must be the last level"},
		{"a/#/", "'#' must be the last level"},
		{"a+/b", "'+' must be a whole level"},
		{"+a", "'+' must be a whole level"},
		{"a/++", "'+' must be a whole level"},
		{"a || +", "wildcard in tag"},
		{"a || b/#", "wildcard in tag"},
		{"a+ || b", "wildcard in tag"},
		{"a || || b", "empty tag"},
		{"|| a", "empty tag"},
		{"a ||", "empty tag"},
		{"||", "empty tag"},
		{"a |||| b", "empty tag"},
		{"a || *", "'*' must be the whole filter"},
		{strings.Repeat("a", MaxFilterLen+1), "longer than 65535"},
	}
	for _, tc := range tests {
		_, err := ParseFilter(tc.filter)
		if !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("ParseFilter(%.20q) error = %v, want ErrInvalidFilter", tc.filter, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFilter(%.20q) error = %q, want it to say %q", tc.filter, err, tc.want)
		}
	}
	if _, err := ParseFilter(strings.Repeat("a", MaxFilterLen)); err != nil {
		t.Errorf("ParseFilter of %d bytes: %v", MaxFilterLen, err)
	}
}

func TestFilterCanonical(t *testing.T) {
	tests := []struct {
		filter string
		str    string
		all    bool
		tags   []string
	}{
		{"*", "*", true, nil},
		{"", "*", true, nil},
		{"#", "*", true, nil},
		{"a", "a", false, []string{"a"}},
		{" a ", " a ", false, []string{" a "}}, // a plain subject is verbatim
		{"b||a", "a || b", false, []string{"a", "b"}},
		{" c ||a|| b\t", "a || b || c", false, []string{"a", "b", "c"}},
		{"a || a", "a", false, []string{"a"}},
		{"a|||b", "a || |b", false, []string{"a", "|b"}},
		{"a/+", "a/+", false, nil},
		{"+/#", "+/#", false, nil},
	}
	for _, tc := range tests {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q): %v", tc.filter, err)
		}
		if got := f.String(); got != tc.str {
			t.Errorf("ParseFilter(%q).String() = %q, want %q", tc.filter, got, tc.str)
		}
		if got := f.All(); got != tc.all {
			t.Errorf("ParseFilter(%q).All() = %v, want %v", tc.filter, got, tc.all)
		}
		if got := f.Tags(); !slices.Equal(got, tc.tags) {
			t.Errorf("ParseFilter(%q).Tags() = %q, want %q", tc.filter, got, tc.tags)
		}
		g, err := ParseFilter(f.String())
		if err != nil || g != f {
			t.Errorf("ParseFilter(%q) = %v, %v; want it equal to ParseFilter(%q)", f.String(), g, err, tc.filter)
		}
	}
	if (Filter{}) != mustParse(t, "*") {
		t.Error("the zero Filter is not the '*' filter")
	}
	if mustParse(t, "b || a") != mustParse(t, "a||b") {
		t.Error("tag lists in different orders are not equal")
	}
	if mustParse(t, "a") != Exact("a") || mustParse(t, "a || a") != Exact("a") {
		t.Error("a plain subject is not Exact")
	}
}

func TestExact(t *testing.T) {
	for _, s := range []string{"", "*", "#", "a/+", "a || b"} {
		f := Exact(s)
		if f.All() || !f.Match(s) || f.Match(s+"x") || !slices.Equal(f.Tags(), []string{s}) {
			t.Errorf("Exact(%q) = %+v does not match only %q", s, f, s)
		}
	}
	if Exact("") == (Filter{}) || Exact("*") == (Filter{}) {
		t.Error("Exact(\"\") or Exact(\"*\") equals the every-message filter")
	}
	var tbl Table[int]
	tbl.Add("alerts", Exact(""), 1)
	tbl.Add("alerts", mustParse(t, "*"), 2)
	if got := matches(&tbl, "alerts", ""); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("Match(alerts, \"\") = %v, want [1 2]", got)
	}
	if got := matches(&tbl, "alerts", "x"); !slices.Equal(got, []int{2}) {
		t.Errorf("Match(alerts, x) = %v, want [2]", got)
	}
}

func TestMatchHash(t *testing.T) {
	tests := []struct {
		filter  string
		subject string
		want    bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a || b", "b", true},
		{"a || b", "c", false},
		{"*", "anything", true},   // cannot tell from a hash: yes
		{"a/+", "b/c", true},      // wildcards: yes
		{"a/#", "anything", true}, // wildcards: yes
		{"dev/1 || dev/2", "dev/2", true},
	}
	for _, tc := range tests {
		h := mustParse(t, tc.filter).WithHash(fnv1a)
		if got := h.MatchHash(fnv1a(tc.subject)); got != tc.want {
			t.Errorf("%q.MatchHash(hash(%q)) = %v, want %v", tc.filter, tc.subject, got, tc.want)
		}
		if h.Match(tc.subject) && !h.MatchHash(fnv1a(tc.subject)) {
			t.Errorf("%q: MatchHash rules out a match of %q", tc.filter, tc.subject)
		}
	}
	if !(HashFilter{}).MatchHash(1) || !(HashFilter{Filter: Exact("a")}).MatchHash(1) {
		t.Error("a HashFilter without hashes says no")
	}
}

func mustParse(t testing.TB, expr string) Filter {
	t.Helper()
	f, err := ParseFilter(expr)
	if err != nil {
		t.Fatalf("ParseFilter(%q): %v", expr, err)
	}
	return f
}

func TestAnyOf(t *testing.T) {
	mustParse := func(e string) Filter {
		f, err := ParseFilter(e)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	cases := []struct {
		fs       []Filter
		match    []string
		nomatch  []string
		union    bool
		tagsOnly bool
	}{
		{fs: nil, nomatch: []string{"", "a"}},
		{fs: []Filter{mustParse("a"), mustParse("b || c")}, match: []string{"a", "b", "c"}, nomatch: []string{"", "d"}, tagsOnly: true},
		{fs: []Filter{mustParse("+/telemetry"), mustParse("7/#")}, match: []string{"1/telemetry", "7", "7/cmd"}, nomatch: []string{"1/cmd", ""}, union: true},
		{fs: []Filter{Exact(""), mustParse("+/x")}, match: []string{"", "a/x"}, nomatch: []string{"a"}, union: true},
		{fs: []Filter{mustParse("+/x"), mustParse("*")}, match: []string{"anything", ""}},
		{fs: []Filter{mustParse("+/x"), mustParse("+/x")}, match: []string{"a/x"}},
	}
	for i, c := range cases {
		f := AnyOf(c.fs...)
		for _, s := range c.match {
			if !f.Match(s) {
				t.Errorf("case %d: %q does not match %q", i, f, s)
			}
		}
		for _, s := range c.nomatch {
			if f.Match(s) {
				t.Errorf("case %d: %q matches %q", i, f, s)
			}
		}
		if f.Union() != c.union {
			t.Errorf("case %d: %q union = %v", i, f, f.Union())
		}
		if c.tagsOnly && f.Tags() == nil {
			t.Errorf("case %d: %q has no tags", i, f)
		}
		if AnyOf(f) != f {
			t.Errorf("case %d: AnyOf(%q) is not idempotent", i, f)
		}
	}
}
