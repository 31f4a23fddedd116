package core

import (
	"fmt"
	"sort"
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

// Groups lists the groups that have had members since start.
func (b *Broker) Groups() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, 0, len(b.groups))
	for n := range b.groups {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Group describes a group: members, assignment, committed offsets and lag.
func (b *Broker) Group(name string) (GroupInfo, error) {
	b.mu.Lock()
	g := b.groups[name]
	b.mu.Unlock()
	if g == nil {
		return GroupInfo{}, fmt.Errorf("%w: %q", ErrUnknownGroup, name)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	info := GroupInfo{Name: name, Mode: g.mode, MaxRetries: g.maxRetries}
	for _, m := range g.members {
		mi := MemberInfo{ID: m.id, Ordered: m.ordered, LastSeen: m.lastSeen}
		for _, c := range m.assigned {
			mi.Queues = append(mi.Queues, c.key.offsetKey())
		}
		info.Members = append(info.Members, mi)
	}
	sort.Slice(info.Members, func(i, j int) bool { return info.Members[i].ID < info.Members[j].ID })
	for k, c := range g.cursors {
		_, hi := b.store.Offsets(k.topic, k.queue)
		q := GroupQueueInfo{Topic: k.topic, Queue: k.queue, Committed: c.committed(), Max: hi, InFlight: len(c.pending)}
		q.Lag = max(0, q.Max-q.Committed)
		if c.owner != nil {
			q.Owner = c.owner.id
		}
		info.Queues = append(info.Queues, q)
	}
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
