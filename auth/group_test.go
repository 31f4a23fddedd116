package auth

import (
	"path/filepath"
	"strings"
	"testing"
)

const groupFixture = `
group join public-readers

user alice
topic readwrite devices/#
group consume alice-
group alice-*
group deny alice-frozen
group reset alice-ops

user bob
topic readwrite bobtopic/#
group join,commit bob

user root
admin
`

func TestAllowGroup(t *testing.T) {
	a := mustACL(t, groupFixture)
	for _, c := range []struct {
		user  string
		want  GroupPerm
		group string
		ok    bool
	}{
		{"alice", GroupJoin, "alice-ops", true},
		{"alice", GroupConsume, "alice-ops", true},
		{"alice", GroupReset, "alice-ops", true},
		{"alice", GroupReset, "alice-other", false},
		{"alice", GroupJoin, "alice-frozen", false}, // deny wins over alice-*
		{"alice", GroupJoin, "bob", false},
		{"bob", GroupJoin, "bob", true},
		{"bob", GroupCommit, "bob", true},
		{"bob", GroupLock, "bob", false},
		{"bob", GroupJoin, "alice-ops", false},
		{"bob", GroupJoin, "bob2", false}, // an exact name is not a prefix
		{"", GroupJoin, "public-readers", true},
		{"", GroupCommit, "public-readers", false},
		{"root", GroupAll, "anything", true},
		{"carol", GroupJoin, "alice-ops", false}, // no section
	} {
		if got := a.allowGroup(c.user, c.want, c.group); got != c.ok {
			t.Errorf("allowGroup(%q, %v, %q) = %v, want %v", c.user, c.want, c.group, got, c.ok)
		}
	}
	if !a.anyGroup("bob", "bob") || a.anyGroup("bob", "alice-ops") {
		t.Error("anyGroup: bob sees bob and not alice-ops")
	}
}

func TestGroupRuleErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"user a\ngroup\n", "acl:2: group: missing name"},
		{"user a\ngroup eat g\n", `unknown group permission "eat"`},
		{"user a\ngroup a*b\n", "* may only end it"},
		{"admin\n", "only in a user section"},
		{"user a\nadmin now\n", "takes nothing after it"},
	} {
		_, err := parseACL("acl", strings.NewReader(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.body, err, c.want)
		}
	}
}

func TestAuthenticatorGroupsAndAdmin(t *testing.T) {
	dir := t.TempDir()
	acl := writeFile(t, filepath.Join(dir, "acl"), groupFixture)
	a, err := New(Config{ACLFile: acl})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Admin("root") || a.Admin("alice") || a.Admin("") {
		t.Error("Admin: only root is one")
	}
	if !a.MayReadSome("alice", "", "devices") || a.MayReadSome("bob", "", "devices") {
		t.Error("MayReadSome: alice reads devices, bob does not")
	}
	if got := a.GroupRefusal("alice", GroupJoin, "alice-frozen"); !strings.Contains(got, "acl:8") {
		t.Errorf("GroupRefusal names the deny line: %q", got)
	}
	if got := a.GroupRefusal("bob", GroupLock, "bob"); !strings.Contains(got, "grants user bob lock") {
		t.Errorf("GroupRefusal says what is missing: %q", got)
	}
	if got := a.Refusal("bob", "", Read, "devices/1"); !strings.Contains(got, "grants user bob read") {
		t.Errorf("Refusal: %q", got)
	}
	open, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !open.Admin("") || !open.AllowGroup("x", GroupAll, "g") || !open.MayReadSome("", "", "t") {
		t.Error("without an ACL file everything is allowed")
	}
}
