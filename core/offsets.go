package core

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// offsetDoc is the "offsets" metadata document: owner (group, or
// group@member in broadcasting) → "topic/queue" → committed offset.
type offsetDoc map[string]map[string]int64

func loadOffsets(b interface {
	LoadMeta(string, any) (bool, error)
}) (offsetDoc, error) {
	doc := offsetDoc{}
	if _, err := b.LoadMeta("offsets", &doc); err != nil {
		return nil, fmt.Errorf("core: load offsets: %w", err)
	}
	if doc == nil {
		doc = offsetDoc{}
	}
	return doc, nil
}

func (b *Broker) offsetsChanged() { b.offsetsVer.Add(1) }

func (b *Broker) savedOffset(owner, key string) (int64, bool) {
	b.savedMu.Lock()
	defer b.savedMu.Unlock()
	off, ok := b.saved[owner][key]
	return off, ok
}

// saveOffsets writes every cursor's committed offset, if any changed since
// the last save. Offsets of groups without members are kept as they were.
func (b *Broker) saveOffsets() error {
	ver := b.offsetsVer.Load()
	b.savedMu.Lock()
	unchanged := ver == b.offsetsSaved
	b.savedMu.Unlock()
	if unchanged {
		return nil
	}
	fresh := offsetDoc{}
	b.mu.Lock()
	for _, g := range b.groups {
		g.mu.Lock()
		for k, c := range g.cursors {
			owner := g.ownerKey(k.owner)
			if fresh[owner] == nil {
				fresh[owner] = map[string]int64{}
			}
			fresh[owner][k.offsetKey()] = c.committed()
		}
		g.mu.Unlock()
	}
	b.mu.Unlock()
	b.savedMu.Lock()
	defer b.savedMu.Unlock()
	doc := make(offsetDoc, len(b.saved))
	for owner, m := range b.saved {
		doc[owner] = maps.Clone(m)
	}
	for owner, m := range fresh {
		if doc[owner] == nil {
			doc[owner] = map[string]int64{}
		}
		maps.Copy(doc[owner], m)
	}
	if err := b.store.SaveMeta("offsets", doc); err != nil {
		return fmt.Errorf("core: save offsets: %w", err)
	}
	b.saved, b.offsetsSaved = doc, ver
	return nil
}

// ResetOffsets moves a group's offsets on every queue it reads (or has
// read) to a start position: the oldest kept, the newest, or a time.
// Messages in flight are delivered again from there.
func (b *Broker) ResetOffsets(groupName string, to StartFrom) error {
	b.mu.Lock()
	g := b.groups[groupName]
	b.mu.Unlock()
	found := g != nil
	b.savedMu.Lock()
	for owner, m := range b.saved {
		if owner != groupName && !strings.HasPrefix(owner, groupName+"@") {
			continue
		}
		found = true
		for key := range m {
			topic, q, ok := splitOffsetKey(key)
			if ok {
				m[key] = b.startOffset(topic, q, to, false)
			}
		}
	}
	b.offsetsSaved = 0 // save even if no cursor moved
	b.savedMu.Unlock()
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownGroup, groupName)
	}
	if g != nil {
		g.mu.Lock()
		for k, c := range g.cursors {
			c.rewind(b.startOffset(k.topic, k.queue, to, false))
			c.suspendUntil, c.failCount = time.Time{}, 0
			if c.owner != nil {
				c.owner.notify()
			}
		}
		g.mu.Unlock()
	}
	b.offsetsChanged()
	return b.saveOffsets()
}

func splitOffsetKey(key string) (string, int, bool) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return "", 0, false
	}
	q, err := strconv.Atoi(key[i+1:])
	return key[:i], q, err == nil
}

// DeleteGroup removes a group: its members are dropped (their pulls end with
// ErrNotMember), and its committed offsets are forgotten. Front-ends use it
// for consumers whose state must not outlive them (an MQTT clean session).
// Its retry and dead-letter topics stay, as messages do.
func (b *Broker) DeleteGroup(groupName string) error {
	b.mu.Lock()
	g := b.groups[groupName]
	delete(b.groups, groupName)
	b.mu.Unlock()
	if g != nil {
		g.mu.Lock()
		for _, m := range g.members {
			m.gone = true
			m.notify()
		}
		g.members = map[string]*Member{}
		g.cursors = map[cursorKey]*cursor{}
		g.mu.Unlock()
	}
	b.savedMu.Lock()
	found := g != nil
	for owner := range b.saved {
		if owner == groupName || strings.HasPrefix(owner, groupName+"@") {
			delete(b.saved, owner)
			found = true
		}
	}
	b.offsetsSaved = 0
	b.savedMu.Unlock()
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownGroup, groupName)
	}
	b.offsetsChanged()
	return b.saveOffsets()
}

// TrimBacklog skips a group's oldest unread messages so that at most max of
// them wait across its queues, each queue giving up a share in proportion
// to its backlog. It returns how many it skipped. Messages delivered and not
// yet acknowledged are not touched. Front-ends use it to bound what waits
// for a consumer that is away (an offline MQTT session).
func (b *Broker) TrimBacklog(groupName string, max int64) (int64, error) {
	type queue struct {
		key      cursorKey
		c        *cursor // nil: only a saved offset
		from, hi int64
	}
	var qs []queue
	var total int64
	b.mu.Lock()
	g := b.groups[groupName]
	b.mu.Unlock()
	if g != nil {
		g.mu.Lock()
		defer g.mu.Unlock()
		for k, c := range g.cursors {
			_, hi := b.store.Offsets(k.topic, k.queue)
			if hi > c.next {
				qs = append(qs, queue{k, c, c.next, hi})
				total += hi - c.next
			}
		}
	} else {
		b.savedMu.Lock()
		for key, off := range b.saved[groupName] {
			if topic, q, ok := splitOffsetKey(key); ok {
				if _, hi := b.store.Offsets(topic, q); hi > off {
					qs = append(qs, queue{cursorKey{topic: topic, queue: q}, nil, off, hi})
					total += hi - off
				}
			}
		}
		b.savedMu.Unlock()
	}
	if total <= max {
		return 0, nil
	}
	var skipped int64
	for _, q := range qs {
		keep := (q.hi - q.from) * max / total
		to := q.hi - keep
		skipped += to - q.from
		if q.c != nil {
			if len(q.c.pending) == 0 {
				q.c.rewind(to)
			} else {
				q.c.next = to
			}
			continue
		}
		b.savedMu.Lock()
		b.saved[groupName][q.key.offsetKey()] = to
		b.savedMu.Unlock()
	}
	b.offsetsChanged()
	return skipped, nil
}
