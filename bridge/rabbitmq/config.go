package rabbitmq

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core/route"
)

// Direction says which way a bridge carries messages.
type Direction string

const (
	// Outbound carries a core topic's messages to a RabbitMQ exchange.
	Outbound Direction = "outbound"
	// Inbound carries a RabbitMQ queue's messages into a core topic.
	Inbound Direction = "inbound"
)

// Policy is what a bridge does with a message RabbitMQ nacks or returns.
type Policy string

const (
	// Retry ends the connection and sends the message again, in order, after
	// a back-off: nothing behind it overtakes it.
	Retry Policy = "retry"
	// DeadLetter stores the message in the bridge's dead-letter topic and
	// goes on.
	DeadLetter Policy = "dead-letter"
)

// Binding binds the inbound queue to an exchange with a routing key pattern.
type Binding struct {
	Exchange string
	Key      string
}

// Config is one bridge. Zero fields take their defaults (withDefaults).
type Config struct {
	// Name names the bridge in logs, metrics and status; its consumer group
	// is "ferry-bridge-" + Name.
	Name      string
	Direction Direction
	// URL is the RabbitMQ to connect to, amqp://user:password@host:port/vhost.
	URL string
	// Origin is the RabbitMQ's identity for loop prevention; default the
	// URL's host, port and vhost.
	Origin string

	// Topic is the core topic read (outbound) or written (inbound).
	Topic string
	// Filter selects the outbound messages of Topic (route.ParseFilter).
	Filter string
	// Start is where an outbound bridge's group starts the first time: "last"
	// (messages stored from then on) or "first" (everything kept).
	Start string

	// Exchange an outbound bridge publishes to (default amq.topic).
	Exchange string
	// DeclareExchange declares Exchange (durable, ExchangeKind) before use.
	DeclareExchange bool
	ExchangeKind    string
	// RoutingKey is the outbound routing key template: {topic}, {subject}
	// (with '/' turned to '.') and {key} (the first key) are replaced;
	// default "{topic}.{subject}".
	RoutingKey string
	// Window bounds the outbound messages published and not yet confirmed.
	Window int
	// OnNack and OnReturn are the policies for nacked and returned
	// (unroutable, published mandatory) messages; default retry for a nack
	// (RabbitMQ could not take it now) and dead-letter for a return (no
	// queue is bound for it: sending it again would stall the bridge).
	OnNack   Policy
	OnReturn Policy
	// DeadLetterTopic receives what a dead-letter policy sets aside
	// (default "ferry-bridge-" + Name + "-dlq").
	DeadLetterTopic string
	// MaxHops drops an outbound message that crossed this many bridges.
	MaxHops int

	// Queue an inbound bridge consumes from; declared (durable) with its
	// bindings when DeclareQueue is set, else it must exist.
	Queue        string
	DeclareQueue bool
	Bindings     []Binding
	// Prefetch bounds the inbound messages delivered and not yet acked.
	Prefetch int

	// BackoffMin and BackoffMax bound the reconnect delay, which doubles
	// after each failed attempt, with jitter.
	BackoffMin, BackoffMax time.Duration
	// Heartbeat is the AMQP heartbeat interval.
	Heartbeat time.Duration
	// Timeout bounds connecting and each RPC (channel open, declares).
	Timeout time.Duration
	// ConfirmTimeout ends a connection whose oldest publish is not
	// confirmed within it while the connection is not blocked.
	ConfirmTimeout time.Duration
	// BlockedTimeout ends a connection blocked this long, so that messages
	// held for it go back to the group before the core's ack timeout.
	BlockedTimeout time.Duration
	// LagInterval is how often an inbound bridge asks RabbitMQ how many
	// messages wait in its queue (its lag).
	LagInterval time.Duration
}

// Defaults of Config.
const (
	DefaultExchange       = "amq.topic"
	DefaultRoutingKey     = "{topic}.{subject}"
	DefaultWindow         = 256
	DefaultPrefetch       = 256
	DefaultMaxHops        = 8
	DefaultBackoffMin     = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	DefaultHeartbeat      = 10 * time.Second
	DefaultTimeout        = 15 * time.Second
	DefaultConfirmTimeout = 30 * time.Second
	DefaultBlockedTimeout = 5 * time.Minute
	DefaultLagInterval    = 5 * time.Second
)

// GroupName is the consumer group of an outbound bridge.
func GroupName(bridge string) string { return "ferry-bridge-" + bridge }

func (c Config) withDefaults() Config {
	set := func(s *string, def string) {
		if *s == "" {
			*s = def
		}
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setInt := func(n *int, def int) {
		if *n <= 0 {
			*n = def
		}
	}
	set(&c.Start, "last")
	set(&c.Exchange, DefaultExchange)
	set(&c.ExchangeKind, amqp.ExchangeTopic)
	set(&c.RoutingKey, DefaultRoutingKey)
	set((*string)(&c.OnNack), string(Retry))
	set((*string)(&c.OnReturn), string(DeadLetter))
	set(&c.DeadLetterTopic, GroupName(c.Name)+"-dlq")
	setInt(&c.Window, DefaultWindow)
	setInt(&c.Prefetch, DefaultPrefetch)
	setInt(&c.MaxHops, DefaultMaxHops)
	setDur(&c.BackoffMin, DefaultBackoffMin)
	setDur(&c.BackoffMax, DefaultBackoffMax)
	setDur(&c.Heartbeat, DefaultHeartbeat)
	setDur(&c.Timeout, DefaultTimeout)
	setDur(&c.ConfirmTimeout, DefaultConfirmTimeout)
	setDur(&c.BlockedTimeout, DefaultBlockedTimeout)
	setDur(&c.LagInterval, DefaultLagInterval)
	if c.Origin == "" {
		c.Origin = Identity(c.URL)
	}
	return c
}

// Identity is a RabbitMQ's identity for loop prevention: its URL without
// credentials (scheme, host, port and vhost).
func Identity(rawURL string) string {
	u, err := amqp.ParseURI(rawURL)
	if err != nil {
		return rawURL
	}
	return fmt.Sprintf("%s://%s:%d/%s", u.Scheme, u.Host, u.Port, url.PathEscape(u.Vhost))
}

func (c Config) validate() error {
	if c.Name == "" {
		return errors.New("name: must not be empty")
	}
	if _, err := amqp.ParseURI(c.URL); err != nil {
		return fmt.Errorf("url: %v", err)
	}
	if c.Topic == "" {
		return errors.New("topic: must not be empty")
	}
	switch c.Direction {
	case Outbound:
		if _, err := route.ParseFilter(c.Filter); err != nil {
			return fmt.Errorf("filter: %v", err)
		}
		if c.Start != "first" && c.Start != "last" {
			return fmt.Errorf("start %q: want first or last", c.Start)
		}
	case Inbound:
		if c.Queue == "" {
			return errors.New("queue: an inbound bridge needs one")
		}
	default:
		return fmt.Errorf("direction %q: want inbound or outbound", c.Direction)
	}
	for key, p := range map[string]Policy{"on-nack": c.OnNack, "on-return": c.OnReturn} {
		if p != Retry && p != DeadLetter {
			return fmt.Errorf("%s %q: want retry or dead-letter", key, p)
		}
	}
	if c.BackoffMax < c.BackoffMin {
		return fmt.Errorf("backoff-max %v: less than backoff-min %v", c.BackoffMax, c.BackoffMin)
	}
	return nil
}
