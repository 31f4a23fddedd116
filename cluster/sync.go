package cluster

import (
	"context"
	"errors"
	"fmt"
)

// RouteSyncer is an Endpoint that holds its answer to a request that
// makes a route (a send that creates its topic, the heartbeat of a new
// consumer group, whose retry topic becomes routable) until the
// NameServers have the route: a client that acts on the answer (starts a
// consumer of the new topic) finds it there. The Registrar gives it its
// Sync.
type RouteSyncer interface {
	SyncRoutesWith(sync func(ctx context.Context) error)
}

// errNotListening: the Endpoint does not listen yet, nothing is
// registered.
var errNotListening = errors.New("cluster: the native listener is not bound yet: nothing registered")

// Sync asks for a registration now and waits until one that read the
// broker's routes after the call has been sent to every NameServer. Its
// error names the NameServers that did not accept it; ctx bounds the wait
// (the caller's answer should not wait on a NameServer that is down: the
// periodic registration retries). Without NameServers it returns at once.
func (r *Registrar) Sync(ctx context.Context) error {
	if len(r.opts.NameServers) == 0 {
		return nil
	}
	r.mu.Lock()
	r.wanted++
	gen := r.wanted
	r.mu.Unlock()
	r.Kick()
	for {
		r.mu.Lock()
		passed, err, ch := r.passed, r.lastErr, r.passedCh
		r.mu.Unlock()
		if passed >= gen {
			return err
		}
		select {
		case <-ch:
		case <-r.stop:
			return errors.New("cluster: the registrar stopped")
		case <-ctx.Done():
			return fmt.Errorf("cluster: registration not confirmed by the NameServers: %w", context.Cause(ctx))
		}
	}
}
