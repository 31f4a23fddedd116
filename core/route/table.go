package route

import (
	"strings"
	"sync"
)

// Table routes messages to subscriptions: it holds entries (topic, filter,
// sub) and, for a message's topic and subject, finds those whose filter
// matches. The zero Table is empty and ready to use; it must not be copied
// after first use.
//
// An entry is a set member: adding the same (topic, filter, sub) twice keeps
// one entry, so a subscriber that subscribes twice is not delivered twice.
// The same sub under two filters that both match is two entries and is
// reported twice; deciding what that means (MQTT delivers once per matching
// subscription or once per client) is the caller's.
//
// Concurrency: a sync.RWMutex guards the table. Match holds the read lock
// while it calls fn, so matches run in parallel and fn must not call back
// into the table; Add and Remove hold the write lock.
type Table[S comparable] struct {
	mu     sync.RWMutex
	topics map[string]*topicTable[S]
	n      int
}

// topicTable holds one topic's entries.
type topicTable[S comparable] struct {
	all   set[S]                     // filters matching every subject
	exact map[string]*set[tagged[S]] // by subject; a tag list under each tag
	root  node[S]                    // wildcard filters, by level
	n     int                        // entries
}

// tagged is an entry of the exact map: which filter, since a sub may be there
// under "a" and under "a || b".
type tagged[S comparable] struct {
	f   Filter
	sub S
}

// node is a trie node for wildcard filters; the path from the root spells the
// filter's levels, so a node's entries need not record their filter.
type node[S comparable] struct {
	children map[string]*node[S] // literal next levels
	plus     *node[S]            // next level '+'
	hash     set[S]              // filters ending in '#' after this node
	subs     set[S]              // filters ending at this node
}

// Add adds the entry (topic, f, sub) and reports whether it was new. A
// SQL92 filter (Filter.SQL92) needs a message's properties, which Match
// does not have: it is not for a Table.
func (t *Table[S]) Add(topic string, f Filter, sub S) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tt := t.topics[topic]
	if tt == nil {
		tt = &topicTable[S]{}
		if t.topics == nil {
			t.topics = make(map[string]*topicTable[S])
		}
		t.topics[topic] = tt
	}
	added := false
	switch f.kind {
	case kindAll:
		added = tt.all.add(sub)
	case kindExact:
		added = tt.addExact(f.expr, tagged[S]{f, sub})
	case kindTags:
		// An entry is under all its tags or under none, so each add agrees.
		for _, tag := range strings.Split(f.expr, tagSep) {
			added = tt.addExact(tag, tagged[S]{f, sub})
		}
	default:
		added = tt.root.add(f.expr, sub)
	}
	if added {
		tt.n++
		t.n++
	}
	return added
}

func (tt *topicTable[S]) addExact(subject string, e tagged[S]) bool {
	s := tt.exact[subject]
	if s == nil {
		s = &set[tagged[S]]{}
		if tt.exact == nil {
			tt.exact = make(map[string]*set[tagged[S]])
		}
		tt.exact[strings.Clone(subject)] = s
	}
	return s.add(e)
}

// Remove removes the entry (topic, f, sub) and reports whether it was there.
// Trie nodes, map keys and topics left empty are removed with it.
func (t *Table[S]) Remove(topic string, f Filter, sub S) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tt := t.topics[topic]
	if tt == nil {
		return false
	}
	removed := false
	switch f.kind {
	case kindAll:
		removed = tt.all.remove(sub)
	case kindExact:
		removed = tt.removeExact(f.expr, tagged[S]{f, sub})
	case kindTags:
		for _, tag := range strings.Split(f.expr, tagSep) { // all agree, as in Add
			removed = tt.removeExact(tag, tagged[S]{f, sub})
		}
	default:
		removed = tt.root.remove(f.expr, sub)
	}
	if !removed {
		return false
	}
	t.n--
	if tt.n--; tt.n == 0 {
		delete(t.topics, topic)
	}
	return true
}

func (tt *topicTable[S]) removeExact(subject string, e tagged[S]) bool {
	s := tt.exact[subject]
	if s == nil || !s.remove(e) {
		return false
	}
	if len(s.items) == 0 {
		delete(tt.exact, subject)
	}
	return true
}

// Match calls fn once for the sub of each entry of topic whose filter matches
// subject: first the entries matching every subject, then exact subjects and
// tag lists, then wildcard filters. The order is otherwise unspecified but
// depends only on the sequence of Adds and Removes. Match does not allocate;
// its cost grows with the subject's depth and the number of matches, not with
// the number of entries. fn must not call the table's methods.
func (t *Table[S]) Match(topic, subject string, fn func(S)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	tt := t.topics[topic]
	if tt == nil {
		return
	}
	for _, s := range tt.all.items {
		fn(s)
	}
	if s := tt.exact[subject]; s != nil {
		for _, e := range s.items {
			fn(e.sub)
		}
	}
	tt.root.match(subject, false, fn)
}

// Len returns the number of entries in the table.
func (t *Table[S]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Subscriptions returns the number of entries of topic.
func (t *Table[S]) Subscriptions(topic string) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if tt := t.topics[topic]; tt != nil {
		return tt.n
	}
	return 0
}

// add adds sub under the wildcard filter expr, the rest of the filter below n.
func (n *node[S]) add(expr string, sub S) bool {
	for {
		level, rest, more := strings.Cut(expr, "/")
		switch level {
		case "#":
			return n.hash.add(sub)
		case "+":
			if n.plus == nil {
				n.plus = &node[S]{}
			}
			n = n.plus
		default:
			c := n.children[level]
			if c == nil {
				c = &node[S]{}
				if n.children == nil {
					n.children = make(map[string]*node[S])
				}
				n.children[strings.Clone(level)] = c
			}
			n = c
		}
		if !more {
			return n.subs.add(sub)
		}
		expr = rest
	}
}

// remove removes sub from under the wildcard filter expr and prunes the
// nodes it leaves empty below n.
func (n *node[S]) remove(expr string, sub S) bool {
	level, rest, more := strings.Cut(expr, "/")
	if level == "#" {
		return n.hash.remove(sub)
	}
	c := n.plus
	if level != "+" {
		c = n.children[level]
	}
	if c == nil {
		return false
	}
	var removed bool
	if more {
		removed = c.remove(rest, sub)
	} else {
		removed = c.subs.remove(sub)
	}
	if removed && c.empty() {
		if level == "+" {
			n.plus = nil
		} else {
			delete(n.children, level)
		}
	}
	return removed
}

func (n *node[S]) empty() bool {
	return len(n.children) == 0 && n.plus == nil && len(n.hash.items) == 0 && len(n.subs.items) == 0
}

// match calls fn for the entries below n that match subject, the levels left
// of the message's subject; done means none is left.
func (n *node[S]) match(subject string, done bool, fn func(S)) {
	for _, s := range n.hash.items {
		fn(s)
	}
	if done {
		for _, s := range n.subs.items {
			fn(s)
		}
		return
	}
	level, rest, more := strings.Cut(subject, "/")
	if c := n.children[level]; c != nil {
		c.match(rest, !more, fn)
	}
	if n.plus != nil {
		n.plus.match(rest, !more, fn)
	}
}

// indexAbove is the size above which a set keeps a map from item to position;
// smaller sets are searched linearly.
const indexAbove = 8

// set is an ordered set: a slice to iterate without allocating, with an index
// once it is large so that Add and Remove stay O(1).
type set[T comparable] struct {
	items []T
	index map[T]int
}

func (s *set[T]) find(v T) int {
	if s.index != nil {
		if i, ok := s.index[v]; ok {
			return i
		}
		return -1
	}
	for i, x := range s.items {
		if x == v {
			return i
		}
	}
	return -1
}

func (s *set[T]) add(v T) bool {
	if s.find(v) >= 0 {
		return false
	}
	s.items = append(s.items, v)
	switch {
	case s.index != nil:
		s.index[v] = len(s.items) - 1
	case len(s.items) > indexAbove:
		s.index = make(map[T]int, len(s.items))
		for i, x := range s.items {
			s.index[x] = i
		}
	}
	return true
}

// remove removes v, moving the last item into its place.
func (s *set[T]) remove(v T) bool {
	i := s.find(v)
	if i < 0 {
		return false
	}
	last := len(s.items) - 1
	if i != last {
		s.items[i] = s.items[last]
		if s.index != nil {
			s.index[s.items[i]] = i
		}
	}
	var zero T
	s.items[last] = zero
	s.items = s.items[:last]
	if s.index != nil {
		delete(s.index, v)
		if len(s.items) <= indexAbove/2 {
			s.index = nil
		}
	}
	if len(s.items) == 0 {
		s.items = nil
	}
	return true
}
