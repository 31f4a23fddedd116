package auth

import (
	"strings"
	"testing"
)

// aclFixture is the ACL file the matching tables run against.
const aclFixture = `
# anonymous clients
topic read public/#
topic deny public/secret

user alice
topic readwrite devices/+/telemetry
topic write cmd/alice
topic read alerts
topic deny devices/13/#

user bob
topic read #
topic deny $SYS/#

# every client
pattern readwrite users/%u/#
pattern write clients/%c/status
pattern read dev-%u/in
pattern deny shared/%u/private
`

func mustACL(t testing.TB, body string) *acl {
	t.Helper()
	a, err := parseACL("acl", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// allowCase is one publish or delivery check and its expected answer.
type allowCase struct {
	user, client string
	acc          Access
	topic        string
	want         bool
}

func checkAllow(t *testing.T, a *acl, cases []allowCase) {
	t.Helper()
	for _, c := range cases {
		if got := a.allow(c.user, c.client, c.acc, c.topic); got != c.want {
			t.Errorf("allow(%q, %q, %v, %q) = %v, want %v", c.user, c.client, c.acc, c.topic, got, c.want)
		}
	}
}

func TestAllow(t *testing.T) {
	checkAllow(t, mustACL(t, aclFixture), []allowCase{
		// anonymous rules
		{"", "c1", Read, "public/news", true},
		{"", "c1", Read, "public", true}, // # matches the parent level
		{"", "c1", Write, "public/news", false},
		{"", "c1", Read, "public/secret", false},
		{"", "c1", Read, "alerts", false}, // alice's rule, not anonymous's
		// a user's section
		{"alice", "c1", Write, "devices/42/telemetry", true},
		{"alice", "c1", Read, "devices/42/telemetry", true},
		{"alice", "c1", Write, "devices/42/telemetry/x", false},
		{"alice", "c1", Write, "devices/42", false},
		{"alice", "c1", Write, "cmd/alice", true},
		{"alice", "c1", Read, "cmd/alice", false},
		{"alice", "c1", Read, "alerts", true},
		{"alice", "c1", Write, "alerts", false},
		{"alice", "c1", Read, "public/news", false},          // anonymous rules are not alice's
		{"alice", "c1", Read, "devices/13/telemetry", false}, // deny wins
		// # does not reach $ topics; deny still applies
		{"bob", "c1", Read, "anything/at/all", true},
		{"bob", "c1", Read, "$SYS/broker/load", false},
		{"bob", "c1", Read, "$other", false},
		{"bob", "c1", Write, "anything", false},
		// patterns with %u and %c
		{"alice", "c1", Write, "users/alice/x", true},
		{"alice", "c1", Read, "users/alice", true},
		{"alice", "c1", Read, "users/bob/x", false},
		{"bob", "c1", Read, "users/alice/x", true}, // bob reads # anyway
		{"carol", "c1", Read, "users/alice/x", false},
		{"carol", "c1", Write, "clients/c1/status", true},
		{"carol", "c2", Write, "clients/c1/status", false},
		{"carol", "c1", Read, "dev-carol/in", true},
		{"carol", "c1", Read, "dev-carol/in/x", false},
		{"carol", "c1", Read, "dev-caro/in", false},
		{"carol", "c1", Read, "dev-carolx/in", false},
		{"bob", "c1", Read, "shared/bob/private", false},
		{"bob", "c1", Read, "shared/carol/private", true},
		{"", "c1", Write, "clients/c1/status", true}, // only %c: anonymous too
		// not topic names
		{"bob", "c1", Read, "", false},
		{"bob", "c1", Read, "a/+", false},
		{"bob", "c1", Read, "a/#", false},
	})
}

// TestAllowInjection tries usernames and client ids that would widen a
// pattern if substituted as they are.
func TestAllowInjection(t *testing.T) {
	checkAllow(t, mustACL(t, aclFixture), []allowCase{
		{"+", "c1", Write, "users/alice/x", false},
		{"#", "c1", Write, "users/alice/x", false},
		{"alice/..", "c1", Write, "users/alice/../x", false},
		{"a/b", "c1", Write, "users/a/b", false},
		{"a+b", "c1", Write, "users/a+b/x", false},
		{"$SYS", "c1", Read, "dev-$SYS/in", false},
		{"", "c1", Write, "users//x", false}, // anonymous: %u is missing
		{"carol", "+", Write, "clients/x/status", false},
		{"carol", "#", Write, "clients/#/status", false},
		{"carol", "", Write, "clients//status", false},
		{"carol", "a/b", Write, "clients/a/b/status", false},
		// A deny pattern is widened, never narrowed: a username it cannot
		// hold denies everything below the levels before %u.
		{"a/b", "c1", Read, "shared/a/b/private", false},
		{"a/b", "c1", Read, "shared/anything", false},
		{"a/b", "c1", Read, "other", false}, // no rule grants it anyway
	})

	// The widened deny rule bites even where another rule grants access.
	checkAllow(t, mustACL(t, "pattern read #\npattern deny private/%u/#\n"), []allowCase{
		{"carol", "c1", Read, "private/alice/x", true},
		{"carol", "c1", Read, "private/carol/x", false},
		{"a/b", "c1", Read, "private/alice/x", false},
		{"a/b", "c1", Read, "public", true},
		{"", "c1", Read, "private//x", false}, // missing: substituted as it is
		{"", "c1", Read, "private/alice/x", true},
	})
}

func TestAllowFilter(t *testing.T) {
	a := mustACL(t, aclFixture)
	for _, c := range []struct {
		user, client, filter string
		want                 bool
	}{
		{"", "c1", "public/#", false}, // contained, but overlaps public/secret
		{"", "c1", "public/+", false},
		{"", "c1", "public/news", true},
		{"", "c1", "public/news/#", true},
		{"", "c1", "public/secret", false},
		{"", "c1", "#", false},
		{"alice", "c1", "devices/+/telemetry", false}, // overlaps deny devices/13/#
		{"alice", "c1", "devices/42/telemetry", true},
		{"alice", "c1", "devices/42/#", false}, // reaches devices/42/x
		{"alice", "c1", "devices/13/telemetry", false},
		{"alice", "c1", "cmd/alice", false}, // write only
		{"alice", "c1", "users/alice/#", true},
		{"alice", "c1", "users/alice/+/x", true},
		{"alice", "c1", "users/+/x", false},
		{"alice", "c1", "users/#", false},
		{"bob", "c1", "#", false}, // overlaps shared/bob/private
		{"bob", "c1", "devices/#", true},
		{"bob", "c1", "+/x", true},
		{"bob", "c1", "$SYS/#", false},
		{"bob", "c1", "$SYS/load", false},
		{"bob", "c1", "$other/x", false}, // # does not contain $ topics
		{"bob", "c1", "shared/+/private", false},
		{"bob", "c1", "shared/carol/private", true},
		{"carol", "c1", "dev-carol/in", true},
		{"carol", "c1", "dev-carol/+", false},
		{"carol", "c1", "+/in", false},
		// injection
		{"#", "c1", "users/#", false},
		{"+", "c1", "users/+/x", false},
		{"a/b", "c1", "users/a/b/#", false},
		// invalid filters
		{"bob", "c1", "", false},
		{"bob", "c1", "a/#/b", false},
		{"bob", "c1", "a+", false},
	} {
		f, ok := splitFilter(c.filter)
		got := ok && a.allowFilter(c.user, c.client, f)
		if got != c.want {
			t.Errorf("allowFilter(%q, %q, %q) = %v, want %v", c.user, c.client, c.filter, got, c.want)
		}
	}
}

// TestContainsOverlaps checks the two relations between a pattern and a
// filter on their own.
func TestContainsOverlaps(t *testing.T) {
	v := newValues("u", "c")
	for _, c := range []struct {
		pattern, filter    string
		contains, overlaps bool
	}{
		{"#", "a/b", true, true},
		{"#", "#", true, true},
		{"#", "$SYS/x", false, false},
		{"+/#", "$SYS/#", false, false},
		{"$SYS/#", "#", false, false},
		{"$SYS/#", "+/x", false, false},
		{"$SYS/#", "$SYS/+", true, true},
		{"a/#", "a", true, true},
		{"a/#", "a/#", true, true},
		{"a/+", "a/#", false, true},
		{"a", "a/#", false, true},
		{"a/+/#", "a/#", false, true},
		{"a/+", "a/+", true, true},
		{"a/+", "a/b", true, true},
		{"a/b", "a/+", false, true},
		{"a/b", "a/c", false, false},
		{"a/b", "a/b/c", false, false},
		{"a/b/c", "a/b", false, false},
		{"a/b/c", "+/+/#", false, true},
		{"x/%u", "x/u", true, true},
		{"x/%u", "x/+", false, true},
		{"x/%u-%c/%", "x/u-c/%", true, true},
		{"x/%u-%c", "x/u-d", false, false},
		{"", "", false, false},
	} {
		p, err := parsePattern(c.pattern, true)
		if c.pattern == "" {
			if err == nil {
				t.Error("empty pattern parsed")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		f, ok := splitFilter(c.filter)
		if !ok {
			t.Fatalf("filter %q invalid", c.filter)
		}
		if got := p.contains(f, &v); got != c.contains {
			t.Errorf("%q contains %q = %v, want %v", c.pattern, c.filter, got, c.contains)
		}
		if got := p.overlaps(f, &v); got != c.overlaps {
			t.Errorf("%q overlaps %q = %v, want %v", c.pattern, c.filter, got, c.overlaps)
		}
	}
}

func TestParseACL(t *testing.T) {
	a := mustACL(t, "topic foo\nuser  alice smith \n\ttopic\tread  a b/c \npattern deny %u\n")
	if len(a.anon) != 1 || a.anon[0].access != Read|Write {
		t.Errorf("anonymous rules %+v: want one readwrite rule", a.anon)
	}
	r := a.users["alice smith"]
	if len(r) != 1 || r[0].access != Read || len(r[0].pat) != 2 || r[0].pat[0].text != "a b" {
		t.Errorf("alice smith's rules %+v: want read on [a b, c]", r)
	}
	if len(a.patterns) != 1 || !a.patterns[0].deny || a.patterns[0].vars != varUser {
		t.Errorf("patterns %+v: want one deny on %%u", a.patterns)
	}
	// %u in a topic line is plain text.
	if b := mustACL(t, "topic read x/%u\n"); !b.allow("", "c", Read, "x/%u") || b.allow("u", "c", Read, "x/u") {
		t.Error("topic line substituted %u")
	}
}

func TestParseACLErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"topic read a\nbogus a\n", "acl:2: unknown keyword"},
		{"\n\n# c\nuser\n", "acl:4: user: missing name"},
		{"topic read\n", ""}, // a topic named "read"
		{"topic\n", "acl:1: topic: empty topic pattern"},
		{"user a\ntopic read a/#/b\n", "acl:2: topic: topic pattern \"a/#/b\": # must be the last level"},
		{"pattern write a/b+\n", "acl:1: pattern: topic pattern \"a/b+\": a wildcard must be a whole level"},
		{"topic subscribe a\n", "acl:1: topic: access \"subscribe\" is not supported"},
		{"TOPIC a\n", "acl:1: unknown keyword \"TOPIC\""},
		{"topic " + strings.Repeat("a", maxLine) + "\n", "acl:1: bufio.Scanner: token too long"},
	} {
		_, err := parseACL("acl", strings.NewReader(c.body))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.body, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: error %v, want %q", c.body, err, c.want)
		}
	}
}

func BenchmarkAllow(b *testing.B) {
	a := mustACL(b, aclFixture)
	b.ReportAllocs()
	for b.Loop() {
		a.allow("carol", "c1", Write, "clients/c1/status")
	}
}
