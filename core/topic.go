package core

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/storage"
)

// TopicConfig is a topic's configuration, kept in the state log.
type TopicConfig struct {
	Name    string    `json:"name"`
	Queues  int       `json:"queues"`
	Created time.Time `json:"created"`
}

type topic struct {
	TopicConfig
	rr atomic.Uint32 // round-robin queue selection
}

// topicTable holds the topics; each is a record of the state log under
// "core/topic/NAME".
type topicTable struct {
	state *stateLog
	mu    sync.RWMutex
	m     map[string]*topic
}

const (
	maxQueues   = 1024
	topicPrefix = coreNamespace + "/topic/"
)

func loadTopics(state *stateLog) (*topicTable, error) {
	t := &topicTable{state: state, m: map[string]*topic{}}
	err := state.each(topicPrefix, func(key string, val []byte) error {
		var c TopicConfig
		if err := json.Unmarshal(val, &c); err != nil {
			return fmt.Errorf("core: topic %s: %w", key, err)
		}
		t.m[c.Name] = &topic{TopicConfig: c}
		return nil
	})
	return t, err
}

// saveLocked writes a topic's configuration, or its removal when c is
// nil. Caller holds mu.
func (t *topicTable) saveLocked(name string, c *TopicConfig) error {
	ch := stateChange{key: topicPrefix + name, del: c == nil}
	if c != nil {
		raw, err := json.Marshal(c)
		if err != nil {
			return err
		}
		ch.val = raw
	}
	return t.state.write(context.Background(), []stateChange{ch}, true)
}

// expand returns the topics a subscription to topic reads: topic itself,
// or for AnyTopic every topic but the internal ones (`%…`).
func (t *topicTable) expand(topic string) []string {
	if topic != AnyTopic {
		return []string{topic}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]string, 0, len(t.m))
	for name := range t.m {
		if name[0] != '%' {
			out = append(out, name)
		}
	}
	return out
}

func (t *topicTable) get(name string) *topic {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[name]
}

// ensure returns the topic, creating it with queues when it does not exist.
func (t *topicTable) ensure(name string, queues int) (*topic, bool, error) {
	if tp := t.get(name); tp != nil {
		return tp, false, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp := t.m[name]; tp != nil {
		return tp, false, nil
	}
	tp := &topic{TopicConfig: TopicConfig{Name: name, Queues: queues, Created: time.Now().UTC()}}
	t.m[name] = tp
	if err := t.saveLocked(name, &tp.TopicConfig); err != nil {
		delete(t.m, name)
		return nil, false, err
	}
	return tp, true, nil
}

// ensureInternal registers an internal topic (a dead-letter topic) with one
// queue, so that it can be listed and inspected.
func (t *topicTable) ensureInternal(name string) (*topic, error) {
	tp, _, err := t.ensure(name, 1)
	return tp, err
}

// CreateTopic creates a topic with queues queues (0: the default). Creating
// an existing topic with more queues than it has adds queues; with the same
// count it is ErrTopicExists.
func (b *Broker) CreateTopic(name string, queues int) (TopicConfig, error) {
	if err := checkName("topic", name); err != nil {
		return TopicConfig{}, err
	}
	if queues == 0 {
		queues = b.cfg.DefaultQueues
	}
	if queues < 1 || queues > maxQueues {
		return TopicConfig{}, fmt.Errorf("%w: topic %q with %d queues: want 1..%d", ErrInvalidQueue, name, queues, maxQueues)
	}
	tp, created, err := b.topics.ensure(name, queues)
	if err != nil {
		return TopicConfig{}, err
	}
	if created {
		b.topicChanged(name)
		return tp.TopicConfig, nil
	}
	b.topics.mu.Lock()
	defer b.topics.mu.Unlock()
	if queues <= tp.Queues {
		return tp.TopicConfig, fmt.Errorf("%w: %q has %d queues", ErrTopicExists, name, tp.Queues)
	}
	old := tp.Queues
	tp.Queues = queues
	if err := b.topics.saveLocked(name, &tp.TopicConfig); err != nil {
		tp.Queues = old
		return tp.TopicConfig, err
	}
	b.topicChanged(name)
	return tp.TopicConfig, nil
}

// DeleteTopic removes a topic's configuration. Its messages stay in the log
// until retention removes them; publishing to it again needs it created
// again (or auto-creation).
func (b *Broker) DeleteTopic(name string) error {
	b.topics.mu.Lock()
	defer b.topics.mu.Unlock()
	tp := b.topics.m[name]
	if tp == nil {
		return fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	delete(b.topics.m, name)
	if err := b.topics.saveLocked(name, nil); err != nil {
		b.topics.m[name] = tp
		return err
	}
	go b.topicChanged(name)
	return nil
}

// HasTopic reports whether a topic exists.
func (b *Broker) HasTopic(name string) bool { return b.topics.get(name) != nil }

// AutoCreatesTopics reports whether a publish creates its topic.
func (b *Broker) AutoCreatesTopics() bool { return b.cfg.AutoCreateTopics }

// DefaultQueues is the queue count of a topic created without one.
func (b *Broker) DefaultQueues() int { return b.cfg.DefaultQueues }

// QueueStats are a queue's offsets: messages [Min, Max) are readable.
type QueueStats struct {
	ID       int
	Min, Max int64
}

// TopicInfo describes a topic for the CLI and metrics.
type TopicInfo struct {
	TopicConfig
	QueueStats []QueueStats
	Rate       float64 // messages per second stored, over the last second
}

// Topic describes one topic.
func (b *Broker) Topic(name string) (TopicInfo, error) {
	tp := b.topics.get(name)
	if tp == nil {
		return TopicInfo{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	return b.describe(tp.TopicConfig), nil
}

// Topics describes every topic, by name.
func (b *Broker) Topics() []TopicInfo {
	b.topics.mu.RLock()
	cfgs := make([]TopicConfig, 0, len(b.topics.m))
	for _, tp := range b.topics.m {
		cfgs = append(cfgs, tp.TopicConfig)
	}
	b.topics.mu.RUnlock()
	sort.Slice(cfgs, func(i, j int) bool { return cfgs[i].Name < cfgs[j].Name })
	out := make([]TopicInfo, len(cfgs))
	for i, c := range cfgs {
		out[i] = b.describe(c)
	}
	return out
}

func (b *Broker) describe(c TopicConfig) TopicInfo {
	info := TopicInfo{TopicConfig: c, Rate: b.rates.rate(c.Name)}
	for q := 0; q < c.Queues; q++ {
		lo, hi := b.store.Offsets(c.Name, q)
		info.QueueStats = append(info.QueueStats, QueueStats{ID: q, Min: lo, Max: hi})
	}
	return info
}

// rateTracker samples each topic's stored message count once a second.
type rateTracker struct {
	mu    sync.Mutex
	last  map[string]int64
	at    time.Time
	rates map[string]float64
}

func (r *rateTracker) sample(store *storage.Store, now time.Time) {
	total := map[string]int64{}
	for _, q := range store.Queues() {
		total[q.Topic] += q.Max
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if dt := now.Sub(r.at).Seconds(); r.last != nil && dt > 0 {
		r.rates = make(map[string]float64, len(total))
		for t, n := range total {
			r.rates[t] = float64(n-r.last[t]) / dt
		}
	}
	r.last, r.at = total, now
}

func (r *rateTracker) rate(topic string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rates[topic]
}
