package route

import "testing"

// FuzzFilter parses any expression and matches it against any subject: no
// panic; what parses round-trips through String; the table, the filter and
// the hash pre-check agree.
func FuzzFilter(f *testing.F) {
	for _, s := range [][2]string{
		{"*", ""}, {"#", "a"}, {"a || b", "b"}, {"a|||b", "|b"}, {"+", ""},
		{"42/#", "42"}, {"+/telemetry", "42/telemetry"}, {"a//+", "a//b"},
		{"/#", ""}, {"a/b#", "a/b"}, {"a || || b", "a"}, {" x ", " x "},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, expr, subject string) {
		flt, err := ParseFilter(expr)
		if err != nil {
			return
		}
		again, err := ParseFilter(flt.String())
		if err != nil || again != flt || again.String() != flt.String() {
			t.Fatalf("ParseFilter(%q) = %q, which parses to %q, %v", expr, flt, again, err)
		}
		match := flt.Match(subject)
		var tbl Table[int]
		tbl.Add("t", flt, 1)
		n := 0
		tbl.Match("t", subject, func(int) { n++ })
		if want := map[bool]int{false: 0, true: 1}[match]; n != want {
			t.Fatalf("%q: Match(%q) = %v but the table called fn %d times", flt, subject, match, n)
		}
		if match && !flt.WithHash(fnv1a).MatchHash(fnv1a(subject)) {
			t.Fatalf("%q: MatchHash rules out %q, which matches", flt, subject)
		}
		if !tbl.Remove("t", again, 1) || tbl.Len() != 0 || len(tbl.topics) != 0 {
			t.Fatalf("%q: Remove left %d entries", flt, tbl.Len())
		}
	})
}
