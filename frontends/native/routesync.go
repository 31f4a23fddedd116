package native

import (
	"context"
	"time"
)

// routeSyncTimeout bounds how long an answer waits for the NameServers to
// have the route its request made: a NameServer that is down does not hold
// up sends, the periodic registration catches up. It stays under the 3 s
// RocketMQ's clients give a send or a heartbeat: a send they time out they
// send again, a duplicate.
const routeSyncTimeout = 2 * time.Second

// SyncRoutesWith makes the answer to a request that makes a route (a send
// that creates its topic, a consumer group's first heartbeat on a
// connection) wait, up to routeSyncTimeout (2 s), for sync: the registrar's
// registration of that route with the NameServers (cluster.RouteSyncer).
// A RocketMQ client that starts a consumer of a topic right after its
// first send then finds the topic's route.
func (s *Server) SyncRoutesWith(sync func(ctx context.Context) error) {
	s.mu.Lock()
	s.syncRoutes = sync
	s.mu.Unlock()
}

// awaitRoutes waits for the routes to be registered; why says what made
// them, for the log when they were not.
func (s *Server) awaitRoutes(ctx context.Context, why, name string) {
	s.mu.Lock()
	sync := s.syncRoutes
	s.mu.Unlock()
	if sync == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, routeSyncTimeout)
	defer cancel()
	if err := sync(ctx); err != nil {
		s.opts.Logger.Warn("native: answering before the NameServers have the new route; clients find it after the next registration",
			why, name, "err", err)
	}
}
