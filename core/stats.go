package core

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// MemberInfo describes a group member.
type MemberInfo struct {
	ID       string
	Ordered  bool
	LastSeen time.Time
	Queues   []string // "topic/queue" assigned to it
}

// GroupQueueInfo is a group's progress on one queue.
type GroupQueueInfo struct {
	Topic     string
	Queue     int
	Owner     string // member id; in broadcasting the member the offsets belong to
	Committed int64
	Max       int64
	Lag       int64 // Max - Committed
	InFlight  int   // delivered and not yet acknowledged
}

// GroupInfo describes a consumer group for the CLI and metrics.
type GroupInfo struct {
	Name       string
	Mode       Mode
	MaxRetries int
	Members    []MemberInfo
	Queues     []GroupQueueInfo
}

// Groups lists every group the broker knows: joined members, consumer
// clients, or committed offsets.
func (b *Broker) Groups() []string {
	set := map[string]bool{}
	b.mu.Lock()
	for n := range b.groups {
		set[n] = true
	}
	for n, m := range b.clients {
		if len(m) > 0 {
			set[n] = true
		}
	}
	b.mu.Unlock()
	b.savedMu.Lock()
	for owner := range b.saved {
		name, _, _ := strings.Cut(owner, "@")
		set[name] = true
	}
	b.savedMu.Unlock()
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Group describes a group: members (joined ones and consumer clients),
// assignment, committed offsets and lag.
func (b *Broker) Group(name string) (GroupInfo, error) {
	b.mu.Lock()
	g := b.groups[name]
	var clients []MemberInfo
	for id, c := range b.clients[name] {
		clients = append(clients, MemberInfo{ID: id, LastSeen: c.lastSeen})
	}
	b.mu.Unlock()
	info := GroupInfo{Name: name, MaxRetries: b.cfg.MaxRetries, Members: clients}
	seen := map[cursorKey]bool{}
	if g != nil {
		g.mu.Lock()
		info.Mode, info.MaxRetries = g.mode, g.maxRetries
		for _, m := range g.members {
			mi := MemberInfo{ID: m.id, Ordered: m.ordered, LastSeen: m.lastSeen}
			for _, c := range m.assigned {
				mi.Queues = append(mi.Queues, c.key.offsetKey())
			}
			info.Members = append(info.Members, mi)
		}
		for k, c := range g.cursors {
			q := GroupQueueInfo{Topic: k.topic, Queue: k.queue, Committed: c.committed(), InFlight: len(c.pending)}
			if c.owner != nil {
				q.Owner = c.owner.id
			}
			info.Queues = append(info.Queues, q)
			seen[cursorKey{topic: k.topic, queue: k.queue}] = true
		}
		g.mu.Unlock()
	}
	b.savedMu.Lock()
	for key, off := range b.saved[name] { // queues read by consumer clients
		if topic, q, ok := splitOffsetKey(key); ok && !seen[cursorKey{topic: topic, queue: q}] {
			info.Queues = append(info.Queues, GroupQueueInfo{Topic: topic, Queue: q, Committed: off})
		}
	}
	b.savedMu.Unlock()
	if g == nil && len(info.Members) == 0 && len(info.Queues) == 0 {
		return GroupInfo{}, fmt.Errorf("%w: %q", ErrUnknownGroup, name)
	}
	for i := range info.Queues {
		q := &info.Queues[i]
		_, q.Max = b.store.Offsets(q.Topic, q.Queue)
		q.Lag = max(0, q.Max-q.Committed)
	}
	sort.Slice(info.Members, func(i, j int) bool { return info.Members[i].ID < info.Members[j].ID })
	sort.Slice(info.Queues, func(i, j int) bool {
		a, b := info.Queues[i], info.Queues[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		if a.Queue != b.Queue {
			return a.Queue < b.Queue
		}
		return a.Owner < b.Owner
	})
	return info, nil
}

// countStored adds the stored size of msgs, which go to one topic, to its
// byte counter: a lock-free map load and one atomic add per batch.
func (b *Broker) countStored(msgs []*Message) {
	if len(msgs) == 0 {
		return
	}
	var n int64
	for _, m := range msgs {
		n += int64(m.Size)
	}
	c, ok := b.storedBytes.Load(msgs[0].Topic)
	if !ok {
		c, _ = b.storedBytes.LoadOrStore(msgs[0].Topic, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(n)
}

// StoredBytes is the bytes stored per topic (as the store encodes them)
// since the broker started, internal topics included.
func (b *Broker) StoredBytes() map[string]int64 {
	out := map[string]int64{}
	b.storedBytes.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// TopicKind classes a topic name: "user" for the topics clients name,
// else the internal topic's purpose: "retry", "dead-letter", "schedule".
func TopicKind(name string) string {
	switch {
	case strings.HasPrefix(name, retryPrefix):
		return "retry"
	case strings.HasPrefix(name, dlqPrefix):
		return "dead-letter"
	case name == scheduleTopic:
		return "schedule"
	case strings.HasPrefix(name, "%"):
		return "internal"
	default:
		return "user"
	}
}
