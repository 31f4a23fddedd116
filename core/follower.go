package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ferrymq/ferry/storage"
)

// A follower core (Config.Follower) runs over a replica's store: the log
// is the master's, copied byte for byte (docs/replication.md), and the
// core serves reads from it while it writes nothing. It replays the state
// as a master's core does, then keeps following the %STATE% records the
// replica's dispatcher indexes, so that topics and committed offsets the
// master creates appear here. Consumer offsets committed to a follower are
// kept in memory only: the master's records replace them as they arrive,
// and a core that starts on a promotion replays the log alone.

// errFollower is what a follower core answers every write with.
var errFollower = fmt.Errorf("%w: this broker is a replica: it serves reads only", ErrFenced)

// Follower reports whether the core is a follower (Config.Follower).
func (b *Broker) Follower() bool { return b.cfg.Follower }

// followState applies the state records the log gets after the replay,
// until the broker closes.
func (b *Broker) followState() {
	defer b.wg.Done()
	for {
		ch, err := b.store.WaitCh(stateTopic, stateRecords)
		if err != nil {
			b.logger.Error("core: follower: cannot wait for state records", "err", err)
			return
		}
		n, err := b.state.catchUp(b.applyFollowed)
		if err != nil {
			b.logger.Error("core: follower: applying the master's state records; trying again", "err", err)
			ch = nil
		}
		if n > 0 {
			continue
		}
		select {
		case <-b.stop:
			return
		case <-ch:
		case <-time.After(time.Second): // a truncation moves no queue forward
		}
	}
}

// catchUp applies the state records past the replay's position, calling fn
// with each after it is applied, and returns how many it applied. A log
// cut below the position (a replica truncated to rejoin a new master)
// replays the state again: fn then gets every live key.
func (l *stateLog) catchUp(fn func(stateChange)) (int, error) {
	_, hi := l.store.Offsets(stateTopic, stateRecords)
	l.mu.Lock()
	next := l.next
	l.mu.Unlock()
	if hi < next {
		return l.replayAgain(fn)
	}
	applied := 0
	for next < hi {
		res, err := l.store.Read(stateTopic, stateRecords, next, storage.ReadOptions{MaxCount: 1024})
		if err != nil {
			return applied, fmt.Errorf("core: read the state at record %d: %w", next, err)
		}
		if len(res.Messages) == 0 {
			break
		}
		changes := make([]stateChange, len(res.Messages))
		l.mu.Lock()
		for i := range res.Messages {
			m := &res.Messages[i]
			changes[i] = stateChange{key: m.Subject, val: bytes.Clone(m.Body), del: m.Properties.Get(propDelete) != ""}
			l.apply(changes[i])
			l.keep = min(l.keep, m.LogOffset)
			l.tail++
		}
		l.next = res.Next
		l.mu.Unlock()
		for _, c := range changes {
			fn(c)
		}
		applied += len(changes)
		next = res.Next
	}
	return applied, nil
}

// replayAgain reads the state from the log anew and hands fn the keys that
// changed, removals included.
func (l *stateLog) replayAgain(fn func(stateChange)) (int, error) {
	fresh, err := openStateLog(l.store, l.logger)
	if err != nil {
		return 0, err
	}
	l.mu.Lock()
	old := l.vals
	l.vals, l.next, l.tail, l.keep = fresh.vals, fresh.next, fresh.tail, fresh.keep
	l.mu.Unlock()
	l.logger.Warn("core: follower: the log was cut below the state already read; replayed it again", "next-record", fresh.next)
	var changes []stateChange
	for k := range old {
		if _, ok := fresh.vals[k]; !ok {
			changes = append(changes, stateChange{key: k, del: true})
		}
	}
	for k, v := range fresh.vals {
		changes = append(changes, stateChange{key: k, val: v})
	}
	for _, c := range changes {
		fn(c)
	}
	return len(changes), nil
}

// applyFollowed makes a state record the master wrote take effect here:
// topics and committed offsets. The other namespaces' state (the
// scheduler's, transactions', front-ends') matters to a master only, and a
// core that starts on a promotion replays it from the log.
func (b *Broker) applyFollowed(c stateChange) {
	switch {
	case strings.HasPrefix(c.key, topicPrefix):
		name := strings.TrimPrefix(c.key, topicPrefix)
		var tc TopicConfig
		if !c.del {
			if err := json.Unmarshal(c.val, &tc); err != nil {
				b.logger.Error("core: follower: a topic record that does not parse", "key", c.key, "err", err)
				return
			}
		}
		b.topics.mu.Lock()
		old := b.topics.m[name]
		switch {
		case c.del:
			delete(b.topics.m, name)
		case old != nil && old.TopicConfig == tc:
			b.topics.mu.Unlock()
			return
		default:
			b.topics.m[name] = &topic{TopicConfig: tc}
		}
		b.topics.mu.Unlock()
		if c.del && old == nil {
			return
		}
		b.topicChanged(name)
	case strings.HasPrefix(c.key, offsetsPrefix):
		owner := strings.TrimPrefix(c.key, offsetsPrefix)
		m := map[string]int64{}
		if !c.del {
			if err := json.Unmarshal(c.val, &m); err != nil {
				b.logger.Error("core: follower: an offsets record that does not parse", "key", c.key, "err", err)
				return
			}
		}
		b.savedMu.Lock()
		if c.del {
			delete(b.saved, owner)
		} else {
			b.saved[owner] = m
		}
		b.savedMu.Unlock()
	}
}
