package client

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// ConsumeFrom is where a consumer group starts on a queue it has no
// committed offset for.
type ConsumeFrom int

const (
	// ConsumeFromFirst starts at the oldest message the broker keeps.
	ConsumeFromFirst ConsumeFrom = iota
	// ConsumeFromLast starts after the last message stored: only messages
	// sent from then on are received.
	ConsumeFromLast
)

func (c ConsumeFrom) wire() string {
	if c == ConsumeFromLast {
		return "CONSUME_FROM_LAST_OFFSET"
	}
	return "CONSUME_FROM_FIRST_OFFSET"
}

// Defaults.
const (
	DefaultNameServer     = "127.0.0.1:9876"
	DefaultProducerGroup  = "DEFAULT_PRODUCER"
	DefaultSendTimeout    = 3 * time.Second
	DefaultRetries        = 2
	DefaultConcurrency    = 20
	DefaultMaxRetries     = 16
	DefaultPullBatch      = 32
	maxPullBatch          = 1024 // the broker's cap too
	defaultRequestTimeout = 3 * time.Second
)

// Option configures a Producer or a PushConsumer. Options that apply to
// only one of them make the other's constructor fail with
// ErrInvalidOption.
type Option func(*options)

type options struct {
	nameServers []string
	user        string      // WithCredentials, WithSigningKey
	signingKey  []byte      // derived from the password: see remoting.SigningKey
	tls         *tls.Config // WithTLS
	group       string
	sendTimeout time.Duration
	retries     int
	logger      *slog.Logger

	consumeFrom  ConsumeFrom
	concurrency  int
	maxRetries   int
	pullBatch    int
	ordered      bool // WithOrdered
	broadcasting bool // WithBroadcasting

	// Intervals: RocketMQ's by default; tests shorten them.
	routeRefresh   time.Duration
	rebalanceEvery time.Duration
	heartbeatEvery time.Duration
	commitEvery    time.Duration
	pollSuspend    time.Duration // a pull's long poll at the broker
	retryBackoff   time.Duration // after a failed pull, or a failed send-back
	lockRenew      time.Duration // an ordered consumer renews its queue locks
	requestTimeout time.Duration // one request other than a send or a pull

	producerOnly []string // producer options given
	consumerOnly []string // consumer options given
	errs         []error
}

func defaultOptions() options {
	return options{
		sendTimeout:    DefaultSendTimeout,
		retries:        DefaultRetries,
		logger:         slog.Default(),
		concurrency:    DefaultConcurrency,
		maxRetries:     DefaultMaxRetries,
		pullBatch:      DefaultPullBatch,
		routeRefresh:   30 * time.Second,
		rebalanceEvery: 5 * time.Second,
		heartbeatEvery: 10 * time.Second,
		commitEvery:    time.Second,
		pollSuspend:    15 * time.Second,
		retryBackoff:   time.Second,
		lockRenew:      20 * time.Second,
		requestTimeout: defaultRequestTimeout,
	}
}

func buildOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if len(o.nameServers) == 0 {
		o.nameServers = []string{DefaultNameServer}
	}
	return o
}

func (o *options) invalid(format string, args ...any) {
	o.errs = append(o.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

// check returns the first invalid option, or one that does not apply to
// kind ("producer" or "consumer").
func (o *options) check(kind string) error {
	if len(o.errs) > 0 {
		return o.errs[0]
	}
	other := o.consumerOnly
	if kind == "consumer" {
		other = o.producerOnly
	}
	if len(other) > 0 {
		return fmt.Errorf("%w: %s does not apply to a %s", ErrInvalidOption, other[0], kind)
	}
	return nil
}

// WithCredentials proves to the brokers that the client is username, for a
// broker that checks credentials (auth.password-file) and applies its topic
// rules (auth.acl-file) to them. The password never leaves the client: it
// derives the user's signing key from it (remoting.SigningKey, about 0.1 s of
// scrypt, once) and signs every request to a broker with it (RocketMQ ACL
// 1.0: AccessKey and Signature, plus FerrySignedAt, the time of signing,
// which brokers use to refuse old replays). A party posing as a broker
// learns the username and the signed requests, never the password or the
// key. The NameServers check nothing and are sent neither.
func WithCredentials(username, password string) Option {
	return func(o *options) {
		if username == "" {
			o.invalid("WithCredentials: empty username")
			return
		}
		o.user, o.signingKey = username, []byte(remoting.SigningKey(username, password))
	}
}

// WithSigningKey is WithCredentials given the user's signing key instead of
// the password: the key ferry passwd --signing-key prints (the password
// file's third field). The key signs requests as the password would; keep
// it as secret.
func WithSigningKey(username, key string) Option {
	return func(o *options) {
		switch {
		case username == "":
			o.invalid("WithSigningKey: empty username")
		case key == "":
			o.invalid("WithSigningKey: empty key")
		default:
			o.user, o.signingKey = username, []byte(key)
		}
	}
}

// WithTLS connects to the brokers over TLS with cfg (nil: the system's
// roots, the broker's host as server name), for brokers whose native
// listener serves TLS (native.tls-cert). The NameServers are dialed over
// plain TCP.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{}
		}
		o.tls = cfg
	}
}

// WithNameServers sets the NameServer addresses (host:port), tried in turn.
// The default is 127.0.0.1:9876.
func WithNameServers(addrs ...string) Option {
	return func(o *options) {
		for _, a := range addrs {
			if a == "" {
				o.invalid("empty NameServer address")
				return
			}
		}
		o.nameServers = append([]string(nil), addrs...)
	}
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithGroup sets a producer's group (default DEFAULT_PRODUCER). Producer only.
func WithGroup(group string) Option {
	return func(o *options) {
		o.producerOnly = append(o.producerOnly, "WithGroup")
		if group == "" {
			o.invalid("empty producer group")
			return
		}
		o.group = group
	}
}

// WithSendTimeout bounds each send, its retries included (default 3 s).
// A context deadline that comes earlier wins. Producer only.
func WithSendTimeout(d time.Duration) Option {
	return func(o *options) {
		o.producerOnly = append(o.producerOnly, "WithSendTimeout")
		if d <= 0 {
			o.invalid("send timeout %v: want > 0", d)
			return
		}
		o.sendTimeout = d
	}
}

// WithRetries sets how many times a failed send is tried again (default 2).
// Producer only.
func WithRetries(n int) Option {
	return func(o *options) {
		o.producerOnly = append(o.producerOnly, "WithRetries")
		if n < 0 {
			o.invalid("retries %d: want >= 0", n)
			return
		}
		o.retries = n
	}
}

// WithConsumeFrom sets where the group starts on a queue it has no
// committed offset for (default ConsumeFromFirst). The group's retry topic
// is always read from its first message. Consumer only.
func WithConsumeFrom(from ConsumeFrom) Option {
	return func(o *options) {
		o.consumerOnly = append(o.consumerOnly, "WithConsumeFrom")
		if from != ConsumeFromFirst && from != ConsumeFromLast {
			o.invalid("consume from %d", from)
			return
		}
		o.consumeFrom = from
	}
}

// WithConcurrency sets how many handlers run at once (default 20).
// Consumer only.
func WithConcurrency(n int) Option {
	return func(o *options) {
		o.consumerOnly = append(o.consumerOnly, "WithConcurrency")
		if n < 1 {
			o.invalid("concurrency %d: want >= 1", n)
			return
		}
		o.concurrency = n
	}
}

// WithMaxRetries sets how many times a failed message is redelivered before
// the broker moves it to the group's dead-letter topic (default 16).
// Consumer only.
func WithMaxRetries(n int) Option {
	return func(o *options) {
		o.consumerOnly = append(o.consumerOnly, "WithMaxRetries")
		if n < 1 {
			o.invalid("max retries %d: want >= 1", n)
			return
		}
		o.maxRetries = n
	}
}

// WithPullBatch sets how many messages one pull asks for (default 32, at
// most 1024). Consumer only.
func WithPullBatch(n int) Option {
	return func(o *options) {
		o.consumerOnly = append(o.consumerOnly, "WithPullBatch")
		if n < 1 || n > maxPullBatch {
			o.invalid("pull batch %d: want 1..%d", n, maxPullBatch)
			return
		}
		o.pullBatch = n
	}
}

// WithOrdered makes the consumer orderly (RocketMQ's MessageListenerOrderly):
// it locks each queue it is assigned at the queue's broker before pulling
// it (a queue it cannot lock yet is tried again at the next rebalance),
// renews its locks every 20 s and unlocks a queue once it stops consuming
// it. Each queue's messages are handled one at a time, in queue order, on
// one goroutine (WithConcurrency bounds how many queues run a handler at
// once). A failed message is retried in place after a second, blocking its
// queue, with ReconsumeTimes counting up; after WithMaxRetries retries it
// is moved to the group's dead-letter topic and the queue moves on.
// Send with Message.ShardingKey to keep related messages in one queue.
// It cannot be combined with WithBroadcasting. Consumer only.
func WithOrdered() Option {
	return func(o *options) {
		o.consumerOnly = append(o.consumerOnly, "WithOrdered")
		o.ordered = true
	}
}

// WithBroadcasting makes the consumer read every queue of its topics
// (RocketMQ's BROADCASTING model): each member of the group receives every
// message. Offsets are kept in the consumer's memory only (RocketMQ keeps
// them in a local file): each start begins per WithConsumeFrom. There is no
// retry topic: a failed message is retried in place after a second, with
// ReconsumeTimes counting up, until it succeeds or the consumer closes.
// It cannot be combined with WithOrdered. Consumer only.
func WithBroadcasting() Option {
	return func(o *options) {
		o.consumerOnly = append(o.consumerOnly, "WithBroadcasting")
		o.broadcasting = true
	}
}

// intervals shortens the background periods, for tests. Zero keeps a default.
type intervals struct {
	routeRefresh, rebalance, heartbeat, commit, pollSuspend, retryBackoff, lockRenew time.Duration
}

func withIntervals(iv intervals) Option {
	return func(o *options) {
		set := func(dst *time.Duration, v time.Duration) {
			if v > 0 {
				*dst = v
			}
		}
		set(&o.routeRefresh, iv.routeRefresh)
		set(&o.rebalanceEvery, iv.rebalance)
		set(&o.heartbeatEvery, iv.heartbeat)
		set(&o.commitEvery, iv.commit)
		set(&o.pollSuspend, iv.pollSuspend)
		set(&o.retryBackoff, iv.retryBackoff)
		set(&o.lockRenew, iv.lockRenew)
	}
}
