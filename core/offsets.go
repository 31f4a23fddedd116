package core

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"
)

// offsetDoc is the committed offsets: owner (group, or group@member in
// broadcasting) → "topic/queue" → committed offset. Each owner's offsets
// are a record of the state log under "core/offsets/OWNER".
type offsetDoc map[string]map[string]int64

const offsetsPrefix = coreNamespace + "/offsets/"

func loadOffsets(state *stateLog) (offsetDoc, error) {
	doc := offsetDoc{}
	err := state.each(offsetsPrefix, func(key string, val []byte) error {
		m := map[string]int64{}
		if err := json.Unmarshal(val, &m); err != nil {
			return fmt.Errorf("core: load offsets %s: %w", key, err)
		}
		doc[strings.TrimPrefix(key, offsetsPrefix)] = m
		return nil
	})
	return doc, err
}

func cloneOffsets(doc offsetDoc) offsetDoc {
	out := make(offsetDoc, len(doc))
	for owner, m := range doc {
		out[owner] = maps.Clone(m)
	}
	return out
}

func (b *Broker) offsetsChanged() { b.offsetsVer.Add(1) }

func (b *Broker) savedOffset(owner, key string) (int64, bool) {
	b.savedMu.Lock()
	defer b.savedMu.Unlock()
	off, ok := b.saved[owner][key]
	return off, ok
}

// setSavedLocked records owner's offset on a queue (key, a cursorKey's
// offsetKey) for the next save. Caller holds savedMu.
func (b *Broker) setSavedLocked(owner, key string, off int64) {
	if b.saved[owner] == nil {
		b.saved[owner] = map[string]int64{}
	}
	b.saved[owner][key] = off
}

// saveOffsets writes every cursor's committed offset, if any changed since
// the last save: a record for each owner whose offsets changed. Offsets of
// groups without members are kept as they were.
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
	b.saveMu.Lock() // one save at a time: the log's records in the order of the saves
	defer b.saveMu.Unlock()
	b.savedMu.Lock()
	doc := cloneOffsets(b.saved)
	for owner, m := range fresh {
		if doc[owner] == nil {
			doc[owner] = map[string]int64{}
		}
		maps.Copy(doc[owner], m)
	}
	b.saved = doc
	doc = cloneOffsets(doc) // b.saved's maps change in place (CommitOffset)
	b.savedMu.Unlock()
	var changes []stateChange
	for owner, m := range doc {
		if !maps.Equal(m, b.logged[owner]) {
			raw, err := json.Marshal(m)
			if err != nil {
				return err
			}
			changes = append(changes, stateChange{key: offsetsPrefix + owner, val: raw})
		}
	}
	for owner := range b.logged {
		if doc[owner] == nil {
			changes = append(changes, stateChange{key: offsetsPrefix + owner, del: true})
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].key < changes[j].key })
	if len(changes) > 0 {
		if err := b.state.write(context.Background(), changes, true); err != nil {
			return fmt.Errorf("core: save offsets: %w", err)
		}
		if b.logger.Enabled(context.Background(), slog.LevelDebug) {
			for _, c := range changes {
				owner := strings.TrimPrefix(c.key, offsetsPrefix)
				var sum int64
				for _, off := range doc[owner] {
					sum += off
				}
				b.logger.Debug("core: committed offsets saved", "owner", owner, "queues", len(doc[owner]), "sum", sum)
			}
		}
	}
	b.logged = doc
	b.savedMu.Lock()
	b.offsetsSaved = ver
	b.savedMu.Unlock()
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
			c.reset(b.startOffset(k.topic, k.queue, to, false))
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
			m.unwatchLocked()
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
// them wait across the queues subs read, each queue giving up a share in
// proportion to its backlog. It returns how many it skipped. Messages
// delivered and not yet acknowledged are not touched. A queue the group has
// not read yet starts where its subscription's Since puts it. Front-ends
// use it to bound what waits for a consumer that is away (an offline MQTT
// session), whose subscriptions the group does not know while it is away.
func (b *Broker) TrimBacklog(groupName string, subs []GroupSub, max int64) (int64, error) {
	type queue struct {
		key      cursorKey
		c        *cursor // nil: no cursor in memory
		from, hi int64
	}
	keys := map[cursorKey]time.Time{}
	for _, s := range subs {
		for _, t := range b.topics.expand(s.Topic) {
			tp := b.topics.get(t)
			if tp == nil {
				continue
			}
			for q := range tp.Queues {
				k := cursorKey{topic: t, queue: q}
				if old, ok := keys[k]; !ok || s.Since.Before(old) {
					keys[k] = s.Since
				}
			}
		}
	}
	b.mu.Lock()
	g := b.groups[groupName]
	b.mu.Unlock()
	if g != nil {
		g.mu.Lock()
		defer g.mu.Unlock()
	}
	var qs []queue
	var total int64
	for k, since := range keys {
		q := queue{key: k}
		_, q.hi = b.store.Offsets(k.topic, k.queue)
		if g != nil && g.cursors[k] != nil {
			q.c = g.cursors[k]
			q.from = q.c.next
		} else if off, ok := b.savedOffset(groupName, k.offsetKey()); ok {
			q.from = off
		} else if !since.IsZero() {
			q.from = b.startOffset(k.topic, k.queue, StartFrom{Kind: StartTime, Time: since}, false)
		} else {
			continue
		}
		if q.hi > q.from {
			qs = append(qs, q)
			total += q.hi - q.from
		}
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
		b.setSavedLocked(groupName, q.key.offsetKey(), to)
		b.savedMu.Unlock()
	}
	b.offsetsChanged()
	return skipped, nil
}
