package auth

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Access is what a client does with a topic.
type Access uint8

const (
	// Read is receiving a topic's messages, and subscribing to it.
	Read Access = 1 << iota
	// Write is publishing to a topic.
	Write
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Read | Write:
		return "readwrite"
	}
	return fmt.Sprintf("Access(%d)", uint8(a))
}

// rule is one topic or pattern line of an ACL file.
type rule struct {
	access Access // the access granted; none for a deny rule
	deny   bool
	pat    pattern
	vars   varMask // pat.vars()
	line   int     // in the ACL file, for refusals
}

// acl is a parsed ACL file.
type acl struct {
	anon     []rule            // topic lines before any user line
	users    map[string][]rule // topic lines by user section
	patterns []rule            // pattern lines, for every client

	groups map[string][]groupRule // group lines by user section ("" anonymous)
	admins map[string]bool        // users whose section holds an admin line
}

// rules returns the topic rules of user ("" for anonymous clients).
func (a *acl) rules(user string) []rule {
	if user == "" {
		return a.anon
	}
	return a.users[user]
}

// count is the number of rules, for the log; 0 without an ACL file.
func (a *acl) count() int {
	if a == nil {
		return 0
	}
	n := len(a.anon) + len(a.patterns) + len(a.admins)
	for _, r := range a.users {
		n += len(r)
	}
	for _, r := range a.groups {
		n += len(r)
	}
	return n
}

// applies reports whether r takes part in a check with v. An allow rule
// using a missing or unsafe value is skipped; a deny rule never is (see
// level.widened).
func (r *rule) applies(v *values) bool {
	return r.deny || r.vars&(v.missing|v.unsafe) == 0
}

// allow decides a publish or delivery of topic: a matching deny rule wins,
// then any matching rule granting acc allows. A topic with wildcards is not
// a topic name, and never allowed.
func (a *acl) allow(user, clientID string, acc Access, topic string) bool {
	if !validTopic(topic) {
		return false
	}
	v := newValues(user, clientID)
	match := func(p pattern) bool { return p.matchTopic(topic, &v) }
	return a.decide(user, &v, acc, match, match)
}

// allowFilter decides a subscription to the filter f (split into levels): no
// deny rule may overlap it, and one rule granting Read must contain it.
func (a *acl) allowFilter(user, clientID string, f []string) bool {
	v := newValues(user, clientID)
	return a.decide(user, &v, Read,
		func(p pattern) bool { return p.overlaps(f, &v) },
		func(p pattern) bool { return p.contains(f, &v) })
}

// decide runs user's rules and the pattern rules: false when a deny rule
// hits, else true when a rule granting acc that applies fits.
func (a *acl) decide(user string, v *values, acc Access, hits, fits func(pattern) bool) bool {
	sets := [2][]rule{a.rules(user), a.patterns}
	for _, rs := range sets {
		for i := range rs {
			if r := &rs[i]; r.deny && hits(r.pat) {
				return false
			}
		}
	}
	for _, rs := range sets {
		for i := range rs {
			if r := &rs[i]; r.access&acc != 0 && r.applies(v) && fits(r.pat) {
				return true
			}
		}
	}
	return false
}

// maxLine caps a line of either file.
const maxLine = 64 << 10

// parseACL reads an ACL file; name is used in errors, which give the line.
func parseACL(name string, r io.Reader) (*acl, error) {
	a := &acl{users: make(map[string][]rule), groups: make(map[string][]groupRule), admins: make(map[string]bool)}
	var user string // the current user section; "" before any
	inUser := false
	err := eachLine(name, r, func(n int, line string) error {
		keyword, rest := cutWord(line)
		switch keyword {
		case "user":
			if rest == "" {
				return fmt.Errorf("user: missing name")
			}
			user, inUser = rest, true
			return nil
		case "group":
			if rest == "" {
				return fmt.Errorf("group: missing name")
			}
			gr, err := parseGroupRule(rest, n)
			if err != nil {
				return fmt.Errorf("group: %w", err)
			}
			a.groups[user] = append(a.groups[user], gr)
			return nil
		case "admin":
			if !inUser {
				return fmt.Errorf("admin: only in a user section: anonymous clients cannot be administrators")
			}
			if rest != "" {
				return fmt.Errorf("admin: takes nothing after it, got %q", rest)
			}
			a.admins[user] = true
			return nil
		case "topic", "pattern":
		default:
			return fmt.Errorf("unknown keyword %q: want user, topic, pattern, group or admin", keyword)
		}
		ru, err := parseRule(rest, keyword == "pattern")
		if err != nil {
			return fmt.Errorf("%s: %w", keyword, err)
		}
		ru.line = n
		switch {
		case keyword == "pattern":
			a.patterns = append(a.patterns, ru)
		case inUser:
			a.users[user] = append(a.users[user], ru)
		default:
			a.anon = append(a.anon, ru)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// parseRule parses "[read|write|readwrite|deny] PATTERN"; without an access
// word the rule grants readwrite.
func parseRule(s string, vars bool) (rule, error) {
	ru := rule{access: Read | Write}
	if word, rest := cutWord(s); rest != "" {
		switch word {
		case "read":
			ru.access, s = Read, rest
		case "write":
			ru.access, s = Write, rest
		case "readwrite":
			s = rest
		case "deny":
			ru.access, ru.deny, s = 0, true, rest
		case "subscribe", "unsubscribe":
			return rule{}, fmt.Errorf("access %q is not supported: read covers subscribing", word)
		}
	}
	p, err := parsePattern(s, vars)
	if err != nil {
		return rule{}, err
	}
	ru.pat, ru.vars = p, p.vars()
	return ru, nil
}

// cutWord splits s at its first run of spaces or tabs.
func cutWord(s string) (word, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// eachLine calls fn with each line of r, and its number, that is neither blank nor a comment,
// trimmed of surrounding white space. An error names the file and the line.
func eachLine(name string, r io.Reader, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return nil
}
