// Package rabbitmq bridges core topics to and from an external RabbitMQ,
// at least once and in order per queue, through outages. See docs/bridge.md.
//
// An outbound bridge reads a core topic through its own consumer group and
// acknowledges a message to the group only once RabbitMQ has confirmed it;
// an inbound bridge acknowledges a RabbitMQ delivery only once the core has
// stored it. Each bridge owns its connection and its reconnect loop.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
)

// State is where a bridge's connection is.
type State string

const (
	StateConnecting State = "connecting"
	StateConnected  State = "connected"
	StateBackingOff State = "backing-off"
	StateBlocked    State = "blocked" // RabbitMQ blocks publishing (resource alarm)
	StateStopped    State = "stopped"
)

// States lists every state, for metrics.
var States = []State{StateConnecting, StateConnected, StateBackingOff, StateBlocked, StateStopped}

// Status is what a bridge shows of itself.
type Status struct {
	Name      string    `json:"name"`
	Direction Direction `json:"direction"`
	Topic     string    `json:"topic"`
	RabbitMQ  string    `json:"rabbitmq"` // the identity: URL without credentials
	State     State     `json:"state"`
	Since     time.Time `json:"since"`
	// Forwarded counts messages carried across (confirmed by RabbitMQ, or
	// stored by the core).
	Forwarded uint64 `json:"forwarded"`
	// DuplicatesPossible counts messages sent again that the other side may
	// already have: outbound, publishes unconfirmed when a connection ended;
	// inbound, deliveries RabbitMQ marked redelivered.
	DuplicatesPossible uint64 `json:"duplicates_possible"`
	DeadLettered       uint64 `json:"dead_lettered"`
	// LoopsDropped counts outbound messages not sent because they came from
	// the same RabbitMQ or crossed too many bridges.
	LoopsDropped uint64 `json:"loops_dropped"`
	// Rejected counts inbound messages the core can never store (too large):
	// rejected without requeue, so RabbitMQ's own dead-lettering applies.
	Rejected   uint64 `json:"rejected"`
	Reconnects uint64 `json:"reconnects"`
	// Lag is the messages waiting for the bridge: outbound, in the store
	// (from its group's committed offsets); inbound, ready in the RabbitMQ
	// queue (asked every LagInterval while connected). -1 when not known.
	Lag         int64     `json:"lag"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Bridge is one configured bridge. Start runs it; Close stops it.
//
// Goroutines: Start spawns the run loop, which owns the connection of the
// moment and, while connected, the session's goroutines (see outbound.go
// and inbound.go); Close cancels it and waits for all of them.
type Bridge struct {
	cfg    Config
	broker *core.Broker
	logger *slog.Logger

	mu        sync.Mutex
	state     State
	since     time.Time
	lastErr   string
	lastErrAt time.Time

	forwarded, duplicates, deadLettered, loops, rejected, reconnects atomic.Uint64

	// probe is set when an outbound session ended to send a message again
	// by the retry policy (returned or nacked). Until RabbitMQ takes one,
	// the bridge sends one message at a time: with a full window, a queue
	// bound (or drained) while the window was in flight could take the
	// messages behind the refused one before it, out of order.
	probe atomic.Bool

	inboundLag atomic.Int64 // messages ready in the inbound queue; -1: not known

	startOnce, closeOnce sync.Once
	cancel               context.CancelFunc
	done                 chan struct{}
}

// New checks cfg and makes a bridge over broker; nothing connects before Start.
func New(broker *core.Broker, cfg Config, logger *slog.Logger) (*Bridge, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bridge %q: %w", cfg.Name, err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	b := &Bridge{cfg: cfg, broker: broker, logger: logger.With("bridge", cfg.Name, "direction", string(cfg.Direction)),
		state: StateStopped, since: time.Now(), done: make(chan struct{})}
	b.inboundLag.Store(-1)
	return b, nil
}

// Name is the bridge's name.
func (b *Bridge) Name() string { return b.cfg.Name }

// Start spawns the bridge's run loop: connect, carry messages, and on any
// failure back off and connect again, until Close.
func (b *Bridge) Start() {
	b.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		b.mu.Lock()
		b.cancel = cancel
		b.mu.Unlock()
		// Before Start returns: what is published once it has is the
		// bridge's to send, however late the run loop gets going.
		b.anchor()
		go b.run(ctx)
	})
}

// Close stops the bridge and waits for its goroutines. Messages in flight
// stay unacknowledged on the side they came from: they are sent again.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		cancel := b.cancel
		b.mu.Unlock()
		if cancel == nil { // never started
			close(b.done)
			return
		}
		cancel()
		<-b.done
	})
	return nil
}

// Status is the bridge's state and counters now.
func (b *Bridge) Status() Status {
	b.mu.Lock()
	s := Status{Name: b.cfg.Name, Direction: b.cfg.Direction, Topic: b.cfg.Topic, RabbitMQ: b.cfg.Origin,
		State: b.state, Since: b.since, LastError: b.lastErr, LastErrorAt: b.lastErrAt}
	b.mu.Unlock()
	s.Forwarded, s.DuplicatesPossible = b.forwarded.Load(), b.duplicates.Load()
	s.DeadLettered, s.LoopsDropped = b.deadLettered.Load(), b.loops.Load()
	s.Rejected, s.Reconnects = b.rejected.Load(), b.reconnects.Load()
	s.Lag = b.lag()
	return s
}

// lag is what the bridge's group has yet to read of its topic (outbound),
// or what RabbitMQ last said was ready in the queue (inbound).
func (b *Bridge) lag() int64 {
	if b.cfg.Direction != Outbound {
		return b.inboundLag.Load()
	}
	info, err := b.broker.Group(GroupName(b.cfg.Name))
	if err != nil {
		return -1
	}
	var n int64
	for _, q := range info.Queues {
		if q.Topic == b.cfg.Topic {
			n += q.Lag
		}
	}
	return n
}

func (b *Bridge) setState(s State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != s {
		b.state, b.since = s, time.Now()
	}
}

func (b *Bridge) fail(err error) {
	b.mu.Lock()
	b.lastErr, b.lastErrAt = err.Error(), time.Now()
	b.mu.Unlock()
}

// run connects, runs a session until it fails, backs off and connects
// again, until ctx ends. The delay doubles after each session that never
// got connected, from BackoffMin up to BackoffMax, with jitter (half to all
// of it), so that many bridges do not reconnect in step.
func (b *Bridge) run(ctx context.Context) {
	defer close(b.done)
	defer b.setState(StateStopped)
	delay := b.cfg.BackoffMin
	for {
		b.setState(StateConnecting)
		var connected bool
		var err error
		if b.cfg.Direction == Outbound {
			connected, err = b.outbound(ctx)
		} else {
			connected, err = b.inbound(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		if connected {
			delay = b.cfg.BackoffMin
		}
		b.fail(err)
		b.reconnects.Add(1)
		b.setState(StateBackingOff)
		wait := delay/2 + rand.N(delay/2+1)
		b.logger.Warn("rabbitmq bridge: connection lost; reconnecting", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, b.cfg.BackoffMax)
	}
}

// anchor fixes where a new outbound bridge starts before it first
// connects, so that what is published while RabbitMQ is still away waits
// for it: with start "last", each queue of the topic without a committed
// offset for the bridge's group gets the queue's end now. A topic that does
// not exist yet is read from its first message, all of it being newer than
// the bridge. Sessions then join reading from the committed offsets.
func (b *Bridge) anchor() {
	if b.cfg.Direction != Outbound || b.cfg.Start != "last" {
		return
	}
	info, err := b.broker.Topic(b.cfg.Topic)
	if err != nil {
		return // not there yet
	}
	group := GroupName(b.cfg.Name)
	for _, q := range info.QueueStats {
		if _, ok := b.broker.CommittedOffset(group, b.cfg.Topic, q.ID); ok {
			continue
		}
		if err := b.broker.CommitOffset(group, b.cfg.Topic, q.ID, q.Max); err != nil {
			b.logger.Error("rabbitmq bridge: setting the start offset", "queue", q.ID, "err", err)
		}
	}
}

// dial connects to RabbitMQ with a fresh Config each time (a reused one
// has lost its password in some client versions), heartbeats, and a bound
// on the TCP connect and the handshake.
func (b *Bridge) dial(role string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(GroupName(b.cfg.Name) + "-" + role)
	conn, err := amqp.DialConfig(b.cfg.URL, amqp.Config{
		Heartbeat:  b.cfg.Heartbeat,
		Locale:     "en_US",
		Properties: props,
		Dial:       amqp.DefaultDial(b.cfg.Timeout),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", b.cfg.Origin, err)
	}
	return conn, nil
}

// errRPCTimeout is an RPC that did not answer within Config.Timeout.
var errRPCTimeout = errors.New("rabbitmq bridge: no answer in time")

// rpc runs call, which talks to RabbitMQ over conn, within the bridge's
// timeout: the client's RPCs have none and wait forever on a dead network.
// On timeout the connection is closed, which ends call; its goroutine ends
// with it.
func (b *Bridge) rpc(ctx context.Context, conn *amqp.Connection, what string, call func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- call() }()
	t := time.NewTimer(b.cfg.Timeout)
	defer t.Stop()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-t.C:
		closeConn(conn, b.cfg.Timeout)
		return fmt.Errorf("%s: %w (%v)", what, errRPCTimeout, b.cfg.Timeout)
	case <-ctx.Done():
		closeConn(conn, b.cfg.Timeout)
		return ctx.Err()
	}
}

// closeConn closes conn, waiting at most timeout for RabbitMQ's answer.
func closeConn(conn *amqp.Connection, timeout time.Duration) {
	_ = conn.CloseDeadline(time.Now().Add(timeout)) // it is failing or done anyway: nothing to report
}
