// Package core is what makes Ferry one broker: topics, publishing, live
// routing, delayed delivery and consumer groups, shared by every protocol.
// It knows nothing of any one protocol; front-ends and bridges call it.
// See docs/core.md.
package core

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/storage"
)

// Message is the message of the store: front-ends build one and publish it.
type Message = storage.Message

// Properties are a message's properties (storage.Properties): a list of
// name and value pairs, with Get, Set, Del and All.
type (
	Properties = storage.Properties
	Property   = storage.Property
)

// Waker is told that a queue a member watches grew (Member.TryPull).
type Waker = storage.Waker

// PropertiesOf makes properties of a map, names sorted.
func PropertiesOf(m map[string]string) Properties { return storage.PropertiesOf(m) }

// Errors of the core; test with errors.Is. Storage's errors (too large,
// disk full…) come through wrapped.
var (
	ErrClosed        = errors.New("core: broker is closed")
	ErrUnknownTopic  = errors.New("core: unknown topic")
	ErrTopicExists   = errors.New("core: topic exists")
	ErrInvalidName   = errors.New("core: invalid name")
	ErrInvalidQueue  = errors.New("core: invalid queue")
	ErrUnknownGroup  = errors.New("core: unknown group")
	ErrGroupMode     = errors.New("core: group mode conflict")
	ErrNotMember     = errors.New("core: not a member of the group")
	ErrStaleDelivery = errors.New("core: delivery no longer owned")
	ErrInvalidDelay  = errors.New("core: invalid delay")
)

// DefaultDelayLevels are RocketMQ's delay levels 1..18.
var DefaultDelayLevels = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute,
	6 * time.Minute, 7 * time.Minute, 8 * time.Minute, 9 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
}

// Config configures a Broker. Zero fields take their defaults.
type Config struct {
	// DefaultQueues is the number of queues of a topic created without a
	// count, and of an auto-created one (default 8).
	DefaultQueues int
	// AutoCreateTopics creates a topic on its first publish.
	AutoCreateTopics bool
	// DelayLevels maps delay level n (1-based) to a delay (default
	// RocketMQ's 18 levels, 1 s … 2 h). Retries use levels 3 and up.
	DelayLevels []time.Duration
	// MaxRetries is how many times a failed message is retried before it
	// goes to the group's dead-letter topic (default 16); a group can set its own.
	MaxRetries int
	// HeartbeatTimeout drops a group member silent this long (default 60 s).
	HeartbeatTimeout time.Duration
	// OrderlyRetryDelay is how long an ordered queue waits before it
	// redelivers a failed message in place (default 1 s).
	OrderlyRetryDelay time.Duration
	// HandoverTimeout bounds how long a queue moving between members waits
	// for its former owner to finish what it holds (default 30 s).
	HandoverTimeout time.Duration
	// AckTimeout takes back a delivered message not acknowledged within it
	// (a consumer stuck in its handler) and retries it as if it had failed
	// (default 15 min, RocketMQ's consume timeout).
	AckTimeout time.Duration
	// FlushInterval is how often committed offsets and scheduler positions
	// are saved (default 1 s). They are saved at Close too.
	FlushInterval time.Duration
	// TransactionCheckDelay is how long after its send an unresolved half
	// message is first checked with its producer group (default 6 s);
	// TransactionCheckInterval, how long between checks (default 60 s);
	// TransactionMaxChecks, how many checks it gets before it is discarded
	// (default 15). RocketMQ's defaults; see transaction.go.
	TransactionCheckDelay    time.Duration
	TransactionCheckInterval time.Duration
	TransactionMaxChecks     int
	// Follower makes the core a replica's (core/follower.go): it replays
	// the state and follows the records the copy brings, serves reads, and
	// writes nothing: publishes and state changes fail with ErrFenced; no
	// scheduler, transaction checks, offset saves or snapshots run.
	Follower bool
	Logger   *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.DefaultQueues <= 0 {
		c.DefaultQueues = 8
	}
	if len(c.DelayLevels) == 0 {
		c.DelayLevels = DefaultDelayLevels
	}
	if c.MaxRetries <= 0 {
		c.MaxRetries = 16
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 60 * time.Second
	}
	if c.OrderlyRetryDelay <= 0 {
		c.OrderlyRetryDelay = time.Second
	}
	if c.HandoverTimeout <= 0 {
		c.HandoverTimeout = 30 * time.Second
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 15 * time.Minute
	}
	if c.TransactionCheckDelay <= 0 {
		c.TransactionCheckDelay = 6 * time.Second
	}
	if c.TransactionCheckInterval <= 0 {
		c.TransactionCheckInterval = time.Minute
	}
	if c.TransactionMaxChecks <= 0 {
		c.TransactionMaxChecks = 15
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Broker is the core over one store.
//
// Goroutines, owned by the Broker and stopped by Close: the scheduler
// (delayed messages and retries), the janitor (heartbeat expiry, offset
// and scheduler saves, rates) and the transaction checker.
//
// Lock order: Broker.mu (groups) → group.mu; topics.mu and the route table
// are leaves.
type Broker struct {
	cfg    Config
	store  *storage.Store
	logger *slog.Logger

	topics *topicTable

	topicWatchers []func(topic string) // under mu
	consumerWatch consumerWatchers     // OnConsumersChange's
	live          *route.Table[*Subscription]
	// liveSubs counts live's entries, so that publishing skips the table
	// when there are none (native-only brokers).
	liveSubs atomic.Int64
	sched    *scheduler
	tx       *transactions // half messages (transaction.go)

	mu      sync.Mutex
	groups  map[string]*group
	clients map[string]map[string]*clientMember // self-rebalancing consumers by group and id

	// state is the broker's state kept in the log (statelog.go).
	state *stateLog

	saveMu       sync.Mutex // one offsets save at a time
	logged       offsetDoc  // committed offsets as the log has them; under saveMu
	savedMu      sync.Mutex
	saved        offsetDoc     // committed offsets as last saved, by owner key
	offsetsVer   atomic.Uint64 // bumped by every offset change
	offsetsSaved uint64        // the version last saved; under savedMu

	// readTurns bounds the Reads reading at once (see Read).
	readTurns chan struct{}

	rates rateTracker
	// storedBytes counts the bytes stored per topic since New: topic →
	// *atomic.Int64, one add per published batch (see StoredBytes).
	storedBytes sync.Map

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    chan struct{}
}

// New opens the core over store, replaying its state from the log (topics,
// committed offsets, the scheduler's positions) after moving a data
// directory of the older layout into it. The store stays the caller's to close, after the
// broker.
func New(store *storage.Store, cfg Config) (*Broker, error) {
	cfg = cfg.withDefaults()
	b := &Broker{
		cfg:       cfg,
		store:     store,
		logger:    cfg.Logger,
		live:      &route.Table[*Subscription]{},
		groups:    map[string]*group{},
		clients:   map[string]map[string]*clientMember{},
		readTurns: make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0))),
		stop:      make(chan struct{}),
		closed:    make(chan struct{}),
	}
	var err error
	if b.state, err = openStateLog(store, b.logger); err != nil {
		return nil, err
	}
	b.state.follower = cfg.Follower
	if !cfg.Follower {
		// A follower's log is the master's copy: the master migrated it,
		// gave it its id (the replication handshake adopts it) and guards
		// its retention.
		if err := b.migrate(); err != nil {
			return nil, err
		}
		if err := b.adoptLogID(); err != nil {
			return nil, err
		}
		store.SetRetentionGuard(b.state.guard)
	}
	if b.topics, err = loadTopics(b.state); err != nil {
		return nil, err
	}
	if b.saved, err = loadOffsets(b.state); err != nil {
		return nil, err
	}
	b.logged = cloneOffsets(b.saved)
	if b.sched, err = newScheduler(b); err != nil {
		return nil, err
	}
	if b.tx, err = loadTransactions(b); err != nil {
		return nil, err
	}
	if cfg.Follower {
		b.wg.Add(2)
		go b.janitor()
		go b.followState()
		return b, nil
	}
	b.wg.Add(3)
	go func() {
		defer b.wg.Done()
		b.sched.run(b.stop)
	}()
	go func() {
		defer b.wg.Done()
		b.tx.runChecks(b.stop)
	}()
	go b.janitor()
	return b, nil
}

// Close stops the scheduler and the janitor, ends every member's waits and
// saves committed offsets and scheduler positions (a follower saves
// nothing).
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.closed)
		close(b.stop)
		b.wg.Wait()
		if b.cfg.Follower {
			return // it writes nothing: its offsets were in memory only
		}
		err = errors.Join(b.saveOffsets(), b.sched.save())
	})
	return err
}

// janitor expires silent members, saves offsets and scheduler positions,
// and samples topic rates.
func (b *Broker) janitor() {
	defer b.wg.Done()
	tick := time.NewTicker(min(b.cfg.FlushInterval, b.cfg.HeartbeatTimeout/4, b.cfg.AckTimeout/4, time.Second))
	defer tick.Stop()
	lastSave := time.Now()
	for {
		select {
		case <-b.stop:
			return
		case now := <-tick.C:
			b.expireMembers(now)
			b.expireClients(now)
			b.expireDeliveries(now)
			b.rates.sample(b.store, now)
			if now.Sub(lastSave) >= b.cfg.FlushInterval && !b.cfg.Follower {
				lastSave = now
				if err := errors.Join(b.saveOffsets(), b.sched.save(), b.state.renew()); err != nil {
					b.logger.Error("core: saving consumer state", "err", err)
				}
			}
		}
	}
}

func (b *Broker) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

// internal topics
const (
	retryPrefix   = "%RETRY%"
	dlqPrefix     = "%DLQ%"
	scheduleTopic = "%SCHEDULE%"
	// RocketMQ's property names, so that its clients read them too.
	propOrigTopic = "RETRY_TOPIC"
	propOrigQueue = "%ORIGIN_QUEUE"
	propOrigMsgID = "ORIGIN_MESSAGE_ID"
	propRealTopic = "REAL_TOPIC"
	propRealQueue = "REAL_QID"
	propDLQReason = "%DLQ_REASON"
)

// RetryTopic and DeadLetterTopic name a group's internal topics.
func RetryTopic(group string) string      { return retryPrefix + group }
func DeadLetterTopic(group string) string { return dlqPrefix + group }

// GroupOf returns the group whose retry or dead-letter topic topic is, and
// false for any other topic.
func GroupOf(topic string) (string, bool) {
	if g, ok := strings.CutPrefix(topic, retryPrefix); ok {
		return g, true
	}
	return strings.CutPrefix(topic, dlqPrefix)
}

func checkName(kind, name string) error {
	if err := storage.ValidTopic(name); err != nil {
		return fmt.Errorf("%w: %s %q: %v", ErrInvalidName, kind, name, err)
	}
	if len(name) > 127-len(retryPrefix) && kind == "group" {
		return fmt.Errorf("%w: group %q: longer than %d characters", ErrInvalidName, name, 127-len(retryPrefix))
	}
	if name[0] == '%' {
		return fmt.Errorf("%w: %s %q: names starting with '%%' are reserved", ErrInvalidName, kind, name)
	}
	return nil
}
