package route

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/core/route/sql92"
)

func TestParseSQL92(t *testing.T) {
	f, err := ParseSQL92("a > 5 AND region IN ('eu','us')")
	if err != nil {
		t.Fatal(err)
	}
	if !f.SQL92() || f.All() || f.Union() || f.Tags() != nil || f.String() != "a > 5 AND region IN ('eu','us')" {
		t.Fatalf("filter %q: SQL92 %v All %v Union %v Tags %v", f, f.SQL92(), f.All(), f.Union(), f.Tags())
	}
	if again, _ := ParseSQL92(f.String()); again != f {
		t.Fatalf("ParseSQL92(%q) = %q, not equal", f, again)
	}
	msg := func(region, a string) Properties {
		return MessageProperties("tagA", []string{"k1", "k2"}, mapProps(map[string]string{"region": region, "a": a}))
	}
	if !f.MatchMessage("", msg("eu", "6")) || f.MatchMessage("", msg("ap", "6")) || f.MatchMessage("", msg("eu", "5")) {
		t.Fatal("MatchMessage disagrees with the expression")
	}
	h := f.WithHash(fnv1a)
	if !h.MatchHash(fnv1a("anything")) || !h.MatchMessage("", msg("us", "7")) || h.MatchMessage("", msg("us", "x")) {
		t.Fatal("HashFilter: MatchHash must say maybe, MatchMessage decide")
	}

	// TAGS and KEYS are there as in RocketMQ; Match sees TAGS alone.
	tags, _ := ParseSQL92("TAGS = 'tagA' AND KEYS = 'k1 k2'")
	if !tags.MatchMessage("tagA", msg("", "")) {
		t.Fatal("TAGS and KEYS not seen")
	}
	onlyTags, _ := ParseSQL92("TAGS = 'tagA' AND KEYS IS NULL")
	if !onlyTags.Match("tagA") || onlyTags.Match("tagB") {
		t.Fatal("Match: a SQL92 filter on the subject alone")
	}

	for _, bad := range []string{"a >", "a = 'x\x00'", "", strings.Repeat("(", 100) + "a" + strings.Repeat(")", 100)} {
		_, err := ParseSQL92(bad)
		if !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("ParseSQL92(%.20q) = %v, want ErrInvalidFilter", bad, err)
		}
		if bad != "a = 'x\x00'" && !errors.Is(err, sql92.ErrSyntax) {
			t.Errorf("ParseSQL92(%.20q) = %v, want sql92.ErrSyntax", bad, err)
		}
	}
	if _, err := ParseSQL92("a >"); err == nil || !strings.Contains(err.Error(), "position 4") {
		t.Errorf("error without its position: %v", err)
	}
}

// TestAnyOfSQL92: a group's members may mix SQL92 and tag filters on one
// topic; the union matches what any of them matches.
func TestAnyOfSQL92(t *testing.T) {
	s1, _ := ParseSQL92("a > 5")
	s2, _ := ParseSQL92("b = 'x'")
	tags, _ := ParseFilter("t1 || t2")
	u := AnyOf(s1, tags, s2, s1)
	if !u.Union() || !u.SQL92() || u != AnyOf(s2, tags, s1) {
		t.Fatalf("union %q", u)
	}
	props := func(kv ...string) Properties {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return MessageProperties("", nil, mapProps(m))
	}
	h := u.WithHash(fnv1a)
	for _, c := range []struct {
		subject string
		props   Properties
		want    bool
	}{
		{"t1", props(), true},
		{"t3", props(), false},
		{"t3", props("a", "6"), true},
		{"t3", props("b", "x"), true},
		{"t3", props("a", "1", "b", "y"), false},
	} {
		if got := h.MatchMessage(c.subject, c.props); got != c.want {
			t.Errorf("%q: MatchMessage(%q) = %v, want %v", u, c.subject, got, c.want)
		}
		if got := u.MatchMessage(c.subject, c.props); got != c.want {
			t.Errorf("%q: Filter.MatchMessage(%q) = %v, want %v", u, c.subject, got, c.want)
		}
	}
	if !h.MatchHash(fnv1a("t3")) {
		t.Fatal("a union with a SQL92 filter must say maybe to any hash")
	}
	if AnyOf(s1, Filter{}) != (Filter{}) {
		t.Fatal("a union with everything is everything")
	}
	if plain, _ := ParseFilter("t1"); plain.SQL92() || AnyOf(plain, tags).SQL92() {
		t.Fatal("SQL92 of a tag filter")
	}
}

// mapProps looks properties up in m.
func mapProps(m map[string]string) Properties {
	return func(name string) (string, bool) { v, ok := m[name]; return v, ok }
}
