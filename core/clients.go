package core

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Consumers that rebalance on their own side (RocketMQ's clients) do not
// join with Join: they heartbeat with their subscriptions, ask for the
// group's member list, pick their queues with the same average allocation
// over the sorted ids that Join's members get, and read and commit offsets
// themselves. Both kinds can share a group: ConsumerIDs lists them all.

type clientMember struct {
	lastSeen time.Time
	topics   []string
}

// ClientHeartbeat records that client id of a group is alive and reads
// topics. A client silent for HeartbeatTimeout is dropped.
func (b *Broker) ClientHeartbeat(groupName, id string, topics []string) error {
	if err := checkName("group", groupName); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.clients[groupName] == nil {
		b.clients[groupName] = map[string]*clientMember{}
	}
	_, known := b.clients[groupName][id]
	b.clients[groupName][id] = &clientMember{lastSeen: time.Now(), topics: topics}
	if !known {
		b.consumerWatch.changed(groupName)
	}
	return nil
}

// ClientGone drops client id from a group (it unregistered or its
// connection closed).
func (b *Broker) ClientGone(groupName, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.clients[groupName][id]; ok {
		delete(b.clients[groupName], id)
		b.consumerWatch.changed(groupName)
	}
}

// ConsumerIDs lists a group's consumers, sorted: self-rebalancing clients
// and members that joined.
func (b *Broker) ConsumerIDs(groupName string) []string {
	b.mu.Lock()
	var ids []string
	for id := range b.clients[groupName] {
		ids = append(ids, id)
	}
	g := b.groups[groupName]
	b.mu.Unlock()
	if g != nil {
		g.mu.Lock()
		for id := range g.members {
			ids = append(ids, id)
		}
		g.mu.Unlock()
	}
	sort.Strings(ids)
	return ids
}

func (b *Broker) expireClients(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for g, m := range b.clients {
		for id, c := range m {
			if now.Sub(c.lastSeen) > b.cfg.HeartbeatTimeout {
				delete(m, id)
				b.consumerWatch.changed(g)
				b.logger.Info("core: consumer client dropped: heartbeat timeout", "group", g, "client", id)
			}
		}
	}
}

// CommittedOffset is a group's committed offset on a queue, false if it
// has none.
func (b *Broker) CommittedOffset(groupName, topic string, queue int) (int64, bool) {
	key := cursorKey{topic: topic, queue: queue}.offsetKey()
	b.mu.Lock()
	g := b.groups[groupName]
	b.mu.Unlock()
	if g != nil {
		g.mu.Lock()
		c := g.cursors[cursorKey{"", topic, queue}]
		var off int64
		if c != nil {
			off = c.committed()
		}
		g.mu.Unlock()
		if c != nil {
			return off, true
		}
	}
	return b.savedOffset(groupName, key)
}

// CommitOffset records a self-rebalancing client's committed offset.
func (b *Broker) CommitOffset(groupName, topic string, queue int, off int64) error {
	if err := checkName("group", groupName); err != nil {
		return err
	}
	key := cursorKey{topic: topic, queue: queue}.offsetKey()
	b.savedMu.Lock()
	b.setSavedLocked(groupName, key, off)
	b.savedMu.Unlock()
	b.offsetsChanged()
	return nil
}

// SendBack takes back a message a self-rebalancing client failed to
// handle: the record at logOffset goes to the group's retry topic with
// a growing delay (or delayLevel when above 0), or to its dead-letter topic
// after maxRetries (0: the broker's) attempts. allow, when set, is asked
// about the message read before anything is copied: its error stops the
// send-back (a client may give back only what it could read).
func (b *Broker) SendBack(ctx context.Context, groupName string, logOffset int64, delayLevel, maxRetries int, allow func(*Message) error) error {
	if err := checkName("group", groupName); err != nil {
		return err
	}
	m, err := b.MessageAt(logOffset)
	if err != nil {
		return fmt.Errorf("core: send back: %w", err)
	}
	if allow != nil {
		if err := allow(&m); err != nil {
			return err
		}
	}
	if maxRetries <= 0 {
		maxRetries = b.cfg.MaxRetries
	}
	g := &group{b: b, name: groupName, maxRetries: maxRetries}
	d := &Delivery{Message: &m, Group: groupName}
	if t := m.Properties.Get(propOrigTopic); t != "" && m.Topic == RetryTopic(groupName) {
		d.Topic = t // a retry failing again keeps its origin
		d.QueueID, _ = strconv.Atoi(m.Properties.Get(propOrigQueue))
	}
	if delayLevel < 0 || int(d.ReconsumeTimes)+1 > maxRetries {
		return g.deadLetter(ctx, d, fmt.Errorf("%d attempts", d.ReconsumeTimes+1))
	}
	return g.sendBackLevel(ctx, d, delayLevel)
}
