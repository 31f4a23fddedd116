package client

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Reads of a broker's queues (pulls, committed offsets) go to its master,
// or to one of its replicas when the route has no master or the master
// could not be reached lately (RocketMQ's clients read from the route's
// slave addresses the same way). A replica serves reads only: sends always
// go to a master. Offsets committed to a replica are kept in its memory
// only (docs/replication.md); the client's own position carries on when
// the master is back.

// unreachableFor is how long a master a read could not reach is passed
// over for its replicas, when it has any.
const unreachableFor = 5 * time.Second

// unreachable records that a read could not reach addr.
func (r *routes) unreachable(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down == nil {
		r.down = map[string]time.Time{}
	}
	now := time.Now()
	for a, until := range r.down {
		if now.After(until) {
			delete(r.down, a)
		}
	}
	r.down[addr] = now.Add(unreachableFor)
}

// isUnreachable reports whether a read failed to reach addr within
// unreachableFor.
func (r *routes) isUnreachable(addr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.down[addr]
	return ok && time.Now().Before(until)
}

// readAddr is where reads of broker's queues go in rt: its master unless
// it is missing or unreachable and a replica is in the route; then the
// first replica not found unreachable.
func (r *routes) readAddr(rt *topicRoute, broker string) (string, error) {
	master := rt.addrs[broker]
	reps := rt.replicas[broker]
	if master != "" && (len(reps) == 0 || !r.isUnreachable(master)) {
		return master, nil
	}
	for _, a := range reps {
		if !r.isUnreachable(a) {
			return a, nil
		}
	}
	if master != "" {
		return master, nil
	}
	if len(reps) > 0 {
		return reps[0], nil
	}
	return "", fmt.Errorf("%w: broker %s of topic %q is not in the route", ErrNoRoute, broker, rt.topic)
}

// readFailed records a read of addr that failed with err: a connection
// failure or a timeout makes the broker's replicas take its reads for a
// while.
func (r *routes) readFailed(addr string, err error) {
	if connFailure(err) || errors.Is(err, context.DeadlineExceeded) {
		r.unreachable(addr)
	}
}

// serves reports whether rt has a broker of that name to read from.
func (rt *topicRoute) serves(broker string) bool {
	return rt.addrs[broker] != "" || len(rt.replicas[broker]) > 0
}

// readNames lists the broker names rt can be read from, sorted.
func (rt *topicRoute) readNames() []string {
	var names []string
	for _, q := range rt.read {
		if len(names) == 0 || names[len(names)-1] != q.Broker {
			names = append(names, q.Broker)
		}
	}
	return names
}
