// Package amqpconf is the configuration's amqp section: the keys of the
// AMQP 0-9-1 front-end, their defaults and their checks. It depends on
// nothing of Ferry, so that package config assembles the file's schema
// with it while package amqp, which maps it onto its Config
// (amqp.ConfigFrom), owns it.
package amqpconf

import (
	"errors"
	"fmt"
	"time"
)

// Section is the section's name in the file, the prefix of its keys
// (amqp.addr) and of their FERRY_AMQP_… variables.
const Section = "amqp"

// Config is the amqp section; it mirrors amqp.Config, where each field is
// documented. An address of "off" disables that listener; the TLS
// listener is off too while no certificate is set.
type Config struct {
	Addr             string        `koanf:"addr"`
	TLSAddr          string        `koanf:"tls-addr"`
	TLSCert          string        `koanf:"tls-cert"`
	TLSKey           string        `koanf:"tls-key"`
	FrameMax         int           `koanf:"frame-max"`
	ChannelMax       int           `koanf:"channel-max"`
	Heartbeat        time.Duration `koanf:"heartbeat"`
	MaxMessageSize   int           `koanf:"max-message-size"`
	MaxUnacked       int           `koanf:"max-unacked"`
	MaxUnconfirmed   int           `koanf:"max-unconfirmed"`
	MaxTxBytes       int           `koanf:"max-tx-bytes"`
	MaxConnections   int64         `koanf:"max-connections"`
	HandshakeTimeout time.Duration `koanf:"handshake-timeout"`
}

// Default is the section where no source sets a key.
func Default() Config {
	return Config{
		Addr:             ":5672",
		TLSAddr:          ":5671",
		FrameMax:         128 << 10,
		ChannelMax:       2047,
		Heartbeat:        60 * time.Second,
		MaxMessageSize:   4 << 20,
		MaxUnacked:       65535,
		MaxUnconfirmed:   65536,
		MaxTxBytes:       64 << 20,
		MaxConnections:   100_000,
		HandshakeTimeout: 10 * time.Second,
	}
}

// Validate reports the first key out of range, naming it (amqp.frame-max).
func (c Config) Validate() error {
	if c.Addr == "" {
		return errors.New("amqp.addr: must not be empty (off disables it)")
	}
	if c.TLSAddr != "off" && (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("amqp.tls-cert and amqp.tls-key: set both, or neither (the TLS listener is then off)")
	}
	if c.FrameMax < 4096 || c.FrameMax > 1<<30 {
		return fmt.Errorf("amqp.frame-max %d: want 4096..1073741824 bytes", c.FrameMax)
	}
	if c.ChannelMax < 1 || c.ChannelMax > 65535 {
		return fmt.Errorf("amqp.channel-max %d: want 1..65535", c.ChannelMax)
	}
	if c.Heartbeat < 0 || c.Heartbeat > 65535*time.Second || c.Heartbeat%time.Second != 0 {
		return fmt.Errorf("amqp.heartbeat %v: want 0 (off) or whole seconds up to 65535s", c.Heartbeat)
	}
	if c.MaxMessageSize < 1 {
		return fmt.Errorf("amqp.max-message-size %d: want at least 1 byte", c.MaxMessageSize)
	}
	if c.MaxUnacked < 1 {
		return fmt.Errorf("amqp.max-unacked %d: want at least 1", c.MaxUnacked)
	}
	if c.MaxUnconfirmed < 1 {
		return fmt.Errorf("amqp.max-unconfirmed %d: want at least 1", c.MaxUnconfirmed)
	}
	if c.MaxTxBytes < 1 {
		return fmt.Errorf("amqp.max-tx-bytes %d: want at least 1", c.MaxTxBytes)
	}
	if c.MaxConnections < 1 {
		return fmt.Errorf("amqp.max-connections %d: want at least 1", c.MaxConnections)
	}
	if c.HandshakeTimeout <= 0 {
		return fmt.Errorf("amqp.handshake-timeout %v: must be positive", c.HandshakeTimeout)
	}
	return nil
}
