package core

import "sync"

// OnConsumersChange calls fn with a group's name after the group's
// consumers (what ConsumerIDs lists) change: a consumer client heartbeats
// for the first time or is gone (unregistered, its connection closed, or
// silent for HeartbeatTimeout), a member joins or leaves. Consumers that
// rebalance on their own side learn from it that they should rebalance now
// (the native front-end tells them with NOTIFY_CONSUMER_IDS_CHANGED).
//
// fn is called with the core's locks held: it must not block nor call the
// Broker. A burst of changes calls it once per change.
func (b *Broker) OnConsumersChange(fn func(group string)) {
	b.consumerWatch.mu.Lock()
	b.consumerWatch.fns = append(b.consumerWatch.fns, fn)
	b.consumerWatch.mu.Unlock()
}

// consumerWatchers are OnConsumersChange's callbacks. Its lock is a leaf:
// changed is called under Broker.mu or group.mu.
type consumerWatchers struct {
	mu  sync.Mutex
	fns []func(group string)
}

// changed tells the watchers that group's consumers changed.
func (w *consumerWatchers) changed(group string) {
	w.mu.Lock()
	fns := w.fns
	w.mu.Unlock()
	for _, fn := range fns {
		fn(group)
	}
}
