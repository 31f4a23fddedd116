// Package mqttconf is the configuration's mqtt section: the keys of the
// MQTT front-end, their defaults and their checks. It depends on nothing
// of Ferry, so that package config assembles the file's schema with it
// while package mqtt, which maps it onto its Config (mqtt.ConfigFrom),
// owns it.
package mqttconf

import (
	"errors"
	"fmt"
	"time"
)

// Section is the section's name in the file, the prefix of its keys
// (mqtt.addr) and of their FERRY_MQTT_… variables.
const Section = "mqtt"

// Config is the mqtt section; it mirrors mqtt.Config, where each field is
// documented. An address of "off" disables that listener; the TLS
// listener is off too while no certificate is set.
type Config struct {
	Addr             string        `koanf:"addr"`
	WSAddr           string        `koanf:"ws-addr"`
	TLSAddr          string        `koanf:"tls-addr"`
	TLSCert          string        `koanf:"tls-cert"`
	TLSKey           string        `koanf:"tls-key"`
	Rules            []Rule        `koanf:"rules"`
	MaxPacketSize    int           `koanf:"max-packet-size"`
	MaxInflight      int           `koanf:"max-inflight"`
	MaxQueued        int64         `koanf:"max-queued"`
	MaxConnections   int64         `koanf:"max-connections"`
	ResendInterval   time.Duration `koanf:"resend-interval"`
	MaxSessionExpiry time.Duration `koanf:"max-session-expiry"` // 0: no cap
	MaxKeepAlive     time.Duration `koanf:"max-keep-alive"`     // MQTT 5 Server Keep Alive cap; 0: none

	// Limits a client cannot exceed (docs/mqtt.md, "Limits").
	ConnectTimeout time.Duration `koanf:"connect-timeout"`  // to send CONNECT
	MaxConnectSize int           `koanf:"max-connect-size"` // the CONNECT, read before login
	MaxTopicLevels int           `koanf:"max-topic-levels"`
	MaxTopicLength int           `koanf:"max-topic-length"` // bytes
	MaxTopicAlias  int           `koanf:"max-topic-alias"`  // 0: no topic aliases
}

// Rule maps MQTT topics under Prefix onto core topic Topic.
type Rule struct {
	Prefix string `koanf:"prefix"`
	Topic  string `koanf:"topic"`
}

// Default is the section where no source sets a key.
func Default() Config {
	return Config{
		Addr:           ":1883",
		WSAddr:         ":8083",
		TLSAddr:        ":8883",
		MaxPacketSize:  4 << 20,
		MaxInflight:    1024,
		MaxQueued:      1_000_000,
		MaxConnections: 1_000_000,
		ResendInterval: 20 * time.Second,

		ConnectTimeout: 10 * time.Second,
		MaxConnectSize: 64 << 10,
		MaxTopicLevels: 128,
		MaxTopicLength: 4096,
		MaxTopicAlias:  10,
	}
}

// Validate reports the first key out of range, naming it (mqtt.max-inflight).
func (m Config) Validate() error {
	if m.TLSAddr != "off" && (m.TLSCert == "") != (m.TLSKey == "") {
		return errors.New("mqtt.tls-cert and mqtt.tls-key: set both, or neither (the TLS listener is then off)")
	}
	if m.MaxPacketSize < 0 || m.MaxPacketSize > 268435455 {
		return fmt.Errorf("mqtt.max-packet-size %d: want 0..268435455 (0: the default, 4 MiB)", m.MaxPacketSize)
	}
	if m.MaxInflight < 1 || m.MaxInflight > 65535 {
		return fmt.Errorf("mqtt.max-inflight %d: want 1..65535", m.MaxInflight)
	}
	if m.MaxQueued < 1 {
		return fmt.Errorf("mqtt.max-queued %d: want at least 1", m.MaxQueued)
	}
	if m.MaxConnections < 1 {
		return fmt.Errorf("mqtt.max-connections %d: want at least 1", m.MaxConnections)
	}
	if m.ResendInterval <= 0 {
		return fmt.Errorf("mqtt.resend-interval %v: must be positive", m.ResendInterval)
	}
	if m.MaxSessionExpiry < 0 || m.MaxSessionExpiry > time.Duration(1<<32-1)*time.Second {
		return fmt.Errorf("mqtt.max-session-expiry %v: want 0 (no cap) up to 136 years", m.MaxSessionExpiry)
	}
	if m.MaxKeepAlive < 0 || m.MaxKeepAlive > 65535*time.Second || m.MaxKeepAlive%time.Second != 0 {
		return fmt.Errorf("mqtt.max-keep-alive %v: want 0 (no cap) or whole seconds up to 65535s", m.MaxKeepAlive)
	}
	if m.ConnectTimeout <= 0 {
		return fmt.Errorf("mqtt.connect-timeout %v: must be positive", m.ConnectTimeout)
	}
	if m.MaxConnectSize < 64 || m.MaxConnectSize > 268435455 {
		return fmt.Errorf("mqtt.max-connect-size %d: want 64..268435455 bytes", m.MaxConnectSize)
	}
	if m.MaxTopicLevels < 1 || m.MaxTopicLevels > 65535 {
		return fmt.Errorf("mqtt.max-topic-levels %d: want 1..65535", m.MaxTopicLevels)
	}
	if m.MaxTopicLength < 1 || m.MaxTopicLength > 65535 {
		return fmt.Errorf("mqtt.max-topic-length %d: want 1..65535 bytes", m.MaxTopicLength)
	}
	if m.MaxTopicAlias < 0 || m.MaxTopicAlias > 65535 {
		return fmt.Errorf("mqtt.max-topic-alias %d: want 0 (none) to 65535", m.MaxTopicAlias)
	}
	for i, r := range m.Rules {
		if r.Prefix == "" || r.Topic == "" {
			return fmt.Errorf("mqtt.rules[%d]: both prefix and topic are needed", i)
		}
	}
	return nil
}
