package auth

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParsePasswords feeds arbitrary bytes to the password file parser: it
// may reject them, never panic, and what it accepts is a set of users.
func FuzzParsePasswords(f *testing.F) {
	f.Add([]byte("# c\n\nalice:$2a$04$abcdefghijklmnopqrstuu5WdBMFvdYrgSBkkDUSPvfZC0CZFzvyS\n"))
	f.Add([]byte("a:b\n:\n#\n\r\n"))
	f.Add([]byte("a:$2y$99$x\n"))
	f.Add([]byte("alice:$2a$04$abcdefghijklmnopqrstuu5WdBMFvdYrgSBkkDUSPvfZC0CZFzvyS:mO4jFnVAlGPDJL2dd6yG4uv9qS3GtQjbx8CTsrtaK2w\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, _, err := parsePasswords("fuzz", bytes.NewReader(data))
		if err == nil && users == nil {
			t.Fatal("no error and no users")
		}
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz:") {
			t.Fatalf("error without file and line: %v", err)
		}
	})
}

// FuzzParseACL feeds arbitrary bytes to the ACL parser and, when they parse,
// checks a topic (and the same string as a filter) against the rules:
// nothing may panic, and a filter naming one topic is decided as the topic.
func FuzzParseACL(f *testing.F) {
	f.Add([]byte(aclFixture), "alice", "c1", "devices/1/telemetry")
	f.Add([]byte("pattern deny %u/%c/#\npattern read +/%c\n"), "a/b", "+", "a/#")
	f.Add([]byte("topic\tread\t$SYS/#\nuser\n"), "", "", "$SYS/x")
	f.Add([]byte(groupFixture), "alice", "", "alice-frozen")
	f.Add([]byte("user a\ngroup join,deny x*\nadmin\ngroup *\n"), "a", "", "x")
	f.Fuzz(func(t *testing.T, data []byte, user, client, topic string) {
		a, err := parseACL("fuzz", bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		read := a.allow(user, client, Read, topic)
		a.allow(user, client, Write, topic)
		// The topic doubles as a group name: a permission implies its parts.
		if a.allowGroup(user, GroupConsume, topic) && !a.allowGroup(user, GroupJoin, topic) {
			t.Fatalf("group %q: consume allowed but not join", topic)
		}
		if f, ok := splitFilter(topic); ok {
			// A filter without wildcards is one topic: the two checks agree.
			if sub := a.allowFilter(user, client, f); validTopic(topic) && sub != read {
				t.Fatalf("topic %q: allow(Read) %v, allowFilter %v", topic, read, sub)
			}
		}
	})
}
