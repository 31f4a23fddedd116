package native

import (
	"log/slog"
	"sync"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// notifyWindow is how long the front-end gathers changes to groups'
// consumers before it tells their connections: a burst of joins (a
// deployment starting ten consumers) makes one NOTIFY_CONSUMER_IDS_CHANGED
// per connection and group, not ten.
const notifyWindow = 200 * time.Millisecond

// notifier sends NOTIFY_CONSUMER_IDS_CHANGED (one-way, ext field
// consumerGroup) to the connections that heartbeated for a group whose
// consumers changed, as RocketMQ's brokers do: their clients rebalance at
// once instead of at their next periodic rebalance, so that two members
// do not read one queue, nor none a queue, for that long.
//
// Goroutines: run, started by the first change and stopped by stop; the
// sends are sends' (one per connection at a time: a connection whose
// previous notification is still writing misses the later rounds' until
// it is written, and its client still rebalances periodically).
type notifier struct {
	window time.Duration
	conns  func(group string) []*remoting.Conn // the connections to tell of group
	sends  *serverSends
	logger *slog.Logger

	mu      sync.Mutex
	changed map[string]bool // groups changed since the last round
	running bool            // run was started (or a test makes the rounds)
	stopped bool
	kick    chan struct{}  // a group changed; capacity 1
	quit    chan struct{}  // closed by stop
	wg      sync.WaitGroup // run
}

func newNotifier(conns func(string) []*remoting.Conn, sends *serverSends, logger *slog.Logger) *notifier {
	return &notifier{window: notifyWindow, conns: conns, sends: sends, logger: logger, changed: map[string]bool{},
		kick: make(chan struct{}, 1), quit: make(chan struct{})}
}

// groupChanged records that group's consumers changed. It is the core's
// OnConsumersChange callback: it never blocks.
func (n *notifier) groupChanged(group string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return
	}
	n.changed[group] = true
	if !n.running {
		n.running = true
		n.wg.Add(1)
		go n.run()
	}
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// run waits for a change, lets the window gather more, then tells the
// connections, until stop.
func (n *notifier) run() {
	defer n.wg.Done()
	for {
		select {
		case <-n.quit:
			return
		case <-n.kick:
		}
		t := time.NewTimer(n.window)
		select {
		case <-n.quit:
			t.Stop()
			return
		case <-t.C:
		}
		n.flush()
	}
}

// flush sends one notification per connection and group changed since
// the last flush.
func (n *notifier) flush() {
	n.mu.Lock()
	changed := n.changed
	n.changed = map[string]bool{}
	n.mu.Unlock()
	byConn := map[*remoting.Conn][]string{}
	for g := range changed {
		for _, c := range n.conns(g) {
			byConn[c] = append(byConn[c], g)
		}
	}
	for c, groups := range byConn {
		cmds := make([]*remoting.Command, len(groups))
		for i, g := range groups {
			cmds[i] = n.sends.oneway(remoting.NotifyConsumerIdsChanged, remoting.Pairs("consumerGroup", g), nil)
		}
		failed := func(err error) {
			n.logger.Debug("native: consumer change not notified", "remote", c.RemoteAddr(), "err", err)
		}
		if !n.sends.send(c, cmds, failed) {
			n.logger.Debug("native: consumer change not notified: the connection does not take what is sent to it", "remote", c.RemoteAddr(), "groups", groups)
		}
	}
}

// stop stops run and waits for it.
func (n *notifier) stop() {
	n.mu.Lock()
	if !n.stopped {
		n.stopped = true
		close(n.quit)
	}
	n.mu.Unlock()
	n.wg.Wait()
}
