package auth

import (
	"fmt"
	"strings"
)

// GroupPerm is what a client does with a consumer group. Topic rules say
// which messages a client may read; group rules say which groups it may
// read them as, and so whose offsets, locks and retries it may touch.
type GroupPerm uint8

const (
	// GroupJoin is being a member: heartbeating and pulling as the group,
	// reading its retry and dead-letter topics, sending a message back to
	// it, listing its members and reading its offsets.
	GroupJoin GroupPerm = 1 << iota
	// GroupCommit is committing the group's offsets.
	GroupCommit
	// GroupLock is locking queues for the group's ordered consumers.
	GroupLock
	// GroupReset is moving the group's offsets anywhere, resending its dead
	// letters and deleting it: an operator's permission on one group.
	GroupReset

	// GroupConsume is what a consumer needs: join, commit and lock.
	GroupConsume = GroupJoin | GroupCommit | GroupLock
	// GroupAll is every group permission.
	GroupAll = GroupConsume | GroupReset
)

var groupPermNames = []struct {
	name string
	perm GroupPerm
}{
	{"join", GroupJoin}, {"commit", GroupCommit}, {"lock", GroupLock}, {"reset", GroupReset},
	{"consume", GroupConsume}, {"all", GroupAll},
}

func (p GroupPerm) String() string {
	for _, n := range groupPermNames {
		if n.perm == p {
			return n.name
		}
	}
	var names []string
	for _, n := range groupPermNames[:4] {
		if p&n.perm != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// groupRule is one group line of an ACL file.
type groupRule struct {
	perm   GroupPerm // granted; none for a deny rule
	deny   bool
	name   string // a group name, or a prefix when prefix is set
	prefix bool   // the line's name ended in *
	line   int
}

func (r *groupRule) matches(group string) bool {
	if r.prefix {
		return strings.HasPrefix(group, r.name)
	}
	return group == r.name
}

// parseGroupRule parses "[PERM[,PERM…]|deny] NAME" of a group line: NAME is
// a group name, or a prefix ending in * (a lone * is every group). Without
// a permission word the rule grants consume.
func parseGroupRule(s string, line int) (groupRule, error) {
	r := groupRule{perm: GroupConsume, line: line}
	if word, rest := cutWord(s); rest != "" {
		s = rest
		if word == "deny" {
			r.perm, r.deny = 0, true
		} else {
			r.perm = 0
			for _, w := range strings.Split(word, ",") {
				p, ok := parseGroupPerm(w)
				if !ok {
					return groupRule{}, fmt.Errorf("unknown group permission %q: want join, commit, lock, reset, consume, all or deny", w)
				}
				r.perm |= p
			}
		}
	}
	if strings.ContainsAny(s, " \t") {
		return groupRule{}, fmt.Errorf("group name %q holds white space", s)
	}
	if i := strings.IndexByte(s, '*'); i >= 0 {
		if i != len(s)-1 {
			return groupRule{}, fmt.Errorf("group name %q: * may only end it", s)
		}
		r.name, r.prefix = s[:i], true
	} else {
		r.name = s
	}
	return r, nil
}

func parseGroupPerm(w string) (GroupPerm, bool) {
	for _, n := range groupPermNames {
		if n.name == w {
			return n.perm, true
		}
	}
	return 0, false
}

// groupPerms is what user may do to group: the union of the matching
// group lines' grants, none when a matching deny line refuses them all,
// everything for an admin.
func (a *acl) groupPerms(user, group string) GroupPerm {
	if a.admins[user] && user != "" {
		return GroupAll
	}
	var have GroupPerm
	for i := range a.groups[user] {
		r := &a.groups[user][i]
		if !r.matches(group) {
			continue
		}
		if r.deny {
			return 0
		}
		have |= r.perm
	}
	return have
}

// allowGroup decides whether user may act on group with every permission
// of want.
func (a *acl) allowGroup(user string, want GroupPerm, group string) bool {
	return a.groupPerms(user, group)&want == want
}

// anyGroup reports whether user holds some permission on group: whether
// the group is user's to see.
func (a *acl) anyGroup(user, group string) bool { return a.groupPerms(user, group) != 0 }

// AllowGroup reports whether user ("" for an anonymous client) may act on
// the consumer group with every permission of want. Without an ACL file
// every client may.
func (a *Authenticator) AllowGroup(user string, want GroupPerm, group string) bool {
	s := a.state.Load()
	return s.acl == nil || s.acl.allowGroup(user, want, group)
}

// SeesGroup reports whether user holds some permission on group, so that it
// is listed to them.
func (a *Authenticator) SeesGroup(user, group string) bool {
	s := a.state.Load()
	return s.acl == nil || s.acl.anyGroup(user, group)
}

// Admin reports whether user may make administrative requests: every
// group's and topic's statistics, creating and changing any topic, and
// every group permission. Without an ACL file every client may; with one,
// only users whose section holds an admin line.
func (a *Authenticator) Admin(user string) bool {
	s := a.state.Load()
	return s.acl == nil || user != "" && s.acl.admins[user]
}

// MayReadSome reports whether user may read some topic at or under topic:
// whether a granting read rule overlaps topic/#. It guards what tells of a
// topic without giving its messages (queue offsets, statistics).
func (a *Authenticator) MayReadSome(user, clientID, topic string) bool {
	f, ok := splitFilter(topic + "/#")
	if !ok {
		return false
	}
	s := a.state.Load()
	if s.acl == nil {
		return true
	}
	v := newValues(user, clientID)
	for _, rs := range [2][]rule{s.acl.rules(user), s.acl.patterns} {
		for i := range rs {
			if r := &rs[i]; r.access&Read != 0 && r.applies(&v) && r.pat.overlaps(f, &v) {
				return true
			}
		}
	}
	return false
}

// Refusal names the ACL line that refuses user the access to topic, or
// says that no line grants it: for the message a refusal carries. It is
// called only after a check failed, off the hot path.
func (a *Authenticator) Refusal(user, clientID string, acc Access, topic string) string {
	s := a.state.Load()
	if s.acl == nil {
		return "refused"
	}
	if validTopic(topic) {
		v := newValues(user, clientID)
		for _, rs := range [2][]rule{s.acl.rules(user), s.acl.patterns} {
			for i := range rs {
				if r := &rs[i]; r.deny && r.pat.matchTopic(topic, &v) {
					return fmt.Sprintf("denied by %s:%d", a.cfg.ACLFile, r.line)
				}
			}
		}
	}
	return fmt.Sprintf("no rule of %s grants %s %s", a.cfg.ACLFile, whom(user), acc)
}

// GroupRefusal is Refusal for a group permission.
func (a *Authenticator) GroupRefusal(user string, want GroupPerm, group string) string {
	s := a.state.Load()
	if s.acl == nil {
		return "refused"
	}
	for i := range s.acl.groups[user] {
		if r := &s.acl.groups[user][i]; r.deny && r.matches(group) {
			return fmt.Sprintf("denied by %s:%d", a.cfg.ACLFile, r.line)
		}
	}
	return fmt.Sprintf("no group line of %s grants %s %s", a.cfg.ACLFile, whom(user), want)
}

func whom(user string) string {
	if user == "" {
		return "anonymous clients"
	}
	return "user " + user
}
