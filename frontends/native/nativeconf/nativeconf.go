// Package nativeconf is the configuration's native section: the keys of
// the native (RocketMQ remoting) front-end, their defaults, their checks,
// and the old top-level keys they replace. It depends on nothing of Ferry,
// so that package config assembles the file's schema with it while package
// native, which maps it onto its listener (native.Plugin), owns it.
//
// The NameServer's listener speaks the same protocol and takes the same
// limits, all but MaxConnections: its connection cap is the top-level
// namesrv-max-connections.
package nativeconf

import (
	"errors"
	"fmt"
	"time"
)

// Section is the section's name in the file, the prefix of its keys
// (native.addr) and of their FERRY_NATIVE_… variables.
const Section = "native"

// Config is the native section. Its limits mirror remoting.Limits, where
// each is documented (docs/native.md, "Limits").
type Config struct {
	// Addr is where the broker's native protocol listens, or "off".
	Addr string `koanf:"addr"`
	// TLSCert and TLSKey, both set, make the native listener serve TLS
	// only (PEM files).
	TLSCert string `koanf:"tls-cert"`
	TLSKey  string `koanf:"tls-key"`
	// AdvertiseAddr is the address registered with the NameServers
	// (host:port clients dial); "" registers the listen address.
	AdvertiseAddr string `koanf:"advertise-addr"`

	MaxConnections      int           `koanf:"max-connections"`
	MaxFrame            int           `koanf:"max-frame"`
	MaxInFlight         int           `koanf:"max-in-flight"`
	FirstRequestTimeout time.Duration `koanf:"first-request-timeout"`
	IdleTimeout         time.Duration `koanf:"idle-timeout"`
	MaxQueuedBytes      int64         `koanf:"max-queued-bytes"`
	MaxReadingBytes     int64         `koanf:"max-reading-bytes"`
}

// Default is the section where no source sets a key.
func Default() Config {
	return Config{
		Addr:                ":10911",
		MaxConnections:      10000,
		MaxFrame:            16 << 20,
		MaxInFlight:         1024,
		FirstRequestTimeout: 10 * time.Second,
		IdleTimeout:         120 * time.Second,
		MaxQueuedBytes:      64 << 20,
		MaxReadingBytes:     256 << 20,
	}
}

// Renamed lists the top-level keys the section's keys had before the
// section existed, each with its key in the section: native-addr is now
// addr (native.addr). The file's old keys are still read, as deprecated
// aliases.
var Renamed = [][2]string{
	{"native-addr", "addr"},
	{"native-tls-cert", "tls-cert"},
	{"native-tls-key", "tls-key"},
	{"advertise-addr", "advertise-addr"},
	{"native-max-connections", "max-connections"},
	{"native-max-frame", "max-frame"},
	{"native-max-in-flight", "max-in-flight"},
	{"native-first-request-timeout", "first-request-timeout"},
	{"native-idle-timeout", "idle-timeout"},
	{"native-max-queued-bytes", "max-queued-bytes"},
	{"native-max-reading-bytes", "max-reading-bytes"},
}

// Validate reports the first key out of range, naming it (native.max-frame).
func (c Config) Validate() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("native.tls-cert and native.tls-key: set both, or neither")
	}
	for _, v := range []struct {
		key string
		val any
		ok  bool
	}{
		{"max-connections", c.MaxConnections, c.MaxConnections > 0},
		{"max-in-flight", c.MaxInFlight, c.MaxInFlight > 0},
		{"max-queued-bytes", c.MaxQueuedBytes, c.MaxQueuedBytes > 0},
		{"max-reading-bytes", c.MaxReadingBytes, c.MaxReadingBytes > 0},
		{"first-request-timeout", c.FirstRequestTimeout, c.FirstRequestTimeout > 0},
		{"idle-timeout", c.IdleTimeout, c.IdleTimeout > 0},
	} {
		if !v.ok {
			return fmt.Errorf("native.%s %v: must be positive", v.key, v.val)
		}
	}
	if f := c.MaxFrame; f < 1024 || f > 1<<30 {
		return fmt.Errorf("native.max-frame %d: want 1024..1073741824 bytes", f)
	}
	return nil
}
