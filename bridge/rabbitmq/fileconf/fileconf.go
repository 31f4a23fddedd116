// Package fileconf is the configuration file's schema of the RabbitMQ
// bridges (the bridges list): its keys, their checks, and the password-env
// lookup. It depends on nothing of Ferry, so that package config decodes
// and checks the file with it while package rabbitmq, which maps it onto
// rabbitmq.Config (rabbitmq.Configs), owns it.
package fileconf

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Bridge is one RabbitMQ bridge, an entry of the bridges list; it
// mirrors bridge/rabbitmq.Config, where each field is documented. Zero
// fields take the bridge's defaults.
type Bridge struct {
	Name      string `koanf:"name"`
	Direction string `koanf:"direction"` // inbound or outbound
	// URL is amqp://user:password@host:port/vhost.
	URL string `koanf:"url"`
	// PasswordEnv names an environment variable holding the password, which
	// then need not be in the file.
	PasswordEnv string `koanf:"password-env"`
	Origin      string `koanf:"origin"`

	Topic  string `koanf:"topic"`
	Filter string `koanf:"filter"`
	Start  string `koanf:"start"` // first or last

	Exchange        string `koanf:"exchange"`
	DeclareExchange bool   `koanf:"declare-exchange"`
	ExchangeKind    string `koanf:"exchange-kind"`
	RoutingKey      string `koanf:"routing-key"`
	Window          int    `koanf:"window"`
	OnNack          string `koanf:"on-nack"`   // retry or dead-letter
	OnReturn        string `koanf:"on-return"` // retry or dead-letter
	DeadLetterTopic string `koanf:"dead-letter-topic"`
	MaxHops         int    `koanf:"max-hops"`

	Queue    Queue `koanf:"queue"`
	Prefetch int   `koanf:"prefetch"`

	BackoffMin     time.Duration `koanf:"backoff-min"`
	BackoffMax     time.Duration `koanf:"backoff-max"`
	Heartbeat      time.Duration `koanf:"heartbeat"`
	Timeout        time.Duration `koanf:"timeout"`
	ConfirmTimeout time.Duration `koanf:"confirm-timeout"`
	BlockedTimeout time.Duration `koanf:"blocked-timeout"`
	LagInterval    time.Duration `koanf:"lag-interval"`
}

// Queue is an inbound bridge's queue: declared (durable) and bound
// when Declare is set, else it must exist.
type Queue struct {
	Name     string    `koanf:"name"`
	Declare  bool      `koanf:"declare"`
	Bindings []Binding `koanf:"bindings"`
}

// Binding binds the queue to an exchange with a routing key pattern.
type Binding struct {
	Exchange string `koanf:"exchange"`
	Key      string `koanf:"key"`
}

// bridgeName: it becomes part of a consumer group and a topic name.
var bridgeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// Validate checks the bridges list; the error names the entry and the key.
func Validate(bs []Bridge) error {
	seen := map[string]bool{}
	for i, b := range bs {
		at := fmt.Sprintf("bridges[%d]", i)
		if b.Name != "" {
			at = fmt.Sprintf("bridges[%d] (%s)", i, b.Name)
		}
		if err := b.validate(); err != nil {
			return fmt.Errorf("%s.%w", at, err)
		}
		if seen[b.Name] {
			return fmt.Errorf("%s.name: another bridge has this name", at)
		}
		seen[b.Name] = true
	}
	return nil
}

func (b Bridge) validate() error {
	if !bridgeName.MatchString(b.Name) {
		return fmt.Errorf("name %q: want 1 to 80 letters, digits, '_' or '-'", b.Name)
	}
	switch b.Direction {
	case "inbound":
		if b.Queue.Name == "" {
			return errors.New("queue.name: an inbound bridge needs one")
		}
		for j, bd := range b.Queue.Bindings {
			if bd.Exchange == "" {
				return fmt.Errorf("queue.bindings[%d].exchange: must not be empty", j)
			}
		}
	case "outbound":
	default:
		return fmt.Errorf("direction %q: want inbound or outbound", b.Direction)
	}
	u, err := url.Parse(b.URL)
	if err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
		return fmt.Errorf("url: want amqp://user:password@host:port/vhost or amqps://…")
	}
	if b.Topic == "" {
		return errors.New("topic: must not be empty")
	}
	if b.Start != "" && b.Start != "first" && b.Start != "last" {
		return fmt.Errorf("start %q: want first or last", b.Start)
	}
	for key, p := range map[string]string{"on-nack": b.OnNack, "on-return": b.OnReturn} {
		if p != "" && p != "retry" && p != "dead-letter" {
			return fmt.Errorf("%s %q: want retry or dead-letter", key, p)
		}
	}
	for key, n := range map[string]int{"window": b.Window, "prefetch": b.Prefetch, "max-hops": b.MaxHops} {
		if n < 0 {
			return fmt.Errorf("%s %d: must not be negative", key, n)
		}
	}
	for key, d := range map[string]time.Duration{"backoff-min": b.BackoffMin, "backoff-max": b.BackoffMax,
		"heartbeat": b.Heartbeat, "timeout": b.Timeout, "confirm-timeout": b.ConfirmTimeout, "blocked-timeout": b.BlockedTimeout,
		"lag-interval": b.LagInterval} {
		if d < 0 {
			return fmt.Errorf("%s %v: must not be negative", key, d)
		}
	}
	if b.BackoffMin > 0 && b.BackoffMax > 0 && b.BackoffMax < b.BackoffMin {
		return fmt.Errorf("backoff-max %v: less than backoff-min %v", b.BackoffMax, b.BackoffMin)
	}
	return nil
}

// ResolvePasswords puts each bridge's password-env variable, looked up
// with lookup, into its URL.
func ResolvePasswords(bs []Bridge, lookup func(name string) string) error {
	for i := range bs {
		b := &bs[i]
		if b.PasswordEnv == "" {
			continue
		}
		pw := lookup(b.PasswordEnv)
		if pw == "" {
			return fmt.Errorf("bridges[%d] (%s).password-env: %s is not set", i, b.Name, b.PasswordEnv)
		}
		u, err := url.Parse(b.URL)
		if err != nil {
			return fmt.Errorf("bridges[%d] (%s).url: want amqp://user@host:port/vhost", i, b.Name)
		}
		user := "guest"
		if u.User != nil {
			user = u.User.Username()
		}
		u.User = url.UserPassword(user, pw)
		b.URL = u.String()
	}
	return nil
}
