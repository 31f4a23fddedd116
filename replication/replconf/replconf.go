// Package replconf is the configuration's replication section: the keys of
// a broker group's master/replica replication (docs/replication.md), their
// defaults and their checks. It depends on nothing of Ferry, so that
// package config assembles the file's schema with it.
package replconf

import (
	"fmt"
	"time"
)

// Section is the section's name in the file, the prefix of its keys
// (replication.addr) and of their FERRY_REPLICATION_… variables.
const Section = "replication"

// Config is the replication section.
type Config struct {
	// Addr is where a master serves its replicas, or "off".
	Addr string `koanf:"addr"`
	// AdvertiseAddr is the address replicas dial, which the controllers
	// hand them (default: Addr's, with 127.0.0.1 for a host left out).
	AdvertiseAddr string `koanf:"advertise-addr"`
	// Mode is async (acknowledge once the master has a write under its
	// flush policy) or sync (once MinInsyncReplicas members have it).
	Mode string `koanf:"mode"`
	// MinInsyncReplicas counts the master: 1 is the master alone; a sync
	// group of three uses 2.
	MinInsyncReplicas int `koanf:"min-insync-replicas"`
	// MaxLag (bytes) and MaxLagTime bound how far behind the master's end
	// an in-sync replica may be.
	MaxLag     int64         `koanf:"max-lag"`
	MaxLagTime time.Duration `koanf:"max-lag-time"`
	// MaxFrame bounds one replication frame; it must hold the largest
	// record (storage.max-message-size and its headers).
	MaxFrame int `koanf:"max-frame"`
	// Lease is how long a master accepts writes after its last answer
	// from the controllers; less than controller.master-timeout.
	Lease time.Duration `koanf:"lease"`
}

// Default is the section where no source sets a key.
func Default() Config {
	return Config{
		Addr:              ":10912",
		Mode:              "async",
		MinInsyncReplicas: 1,
		MaxLag:            64 << 20,
		MaxLagTime:        10 * time.Second,
		MaxFrame:          5 << 20,
		Lease:             2500 * time.Millisecond,
	}
}

// Validate reports the first key out of range, naming it.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("replication.addr is empty: want host:port or \"off\"")
	case c.Mode != "async" && c.Mode != "sync":
		return fmt.Errorf("replication.mode %q: want async or sync", c.Mode)
	case c.MinInsyncReplicas < 1 || c.MinInsyncReplicas > 16:
		return fmt.Errorf("replication.min-insync-replicas %d: want 1..16 (the master counts)", c.MinInsyncReplicas)
	case c.MaxLag < 1:
		return fmt.Errorf("replication.max-lag %d: want at least 1 byte", c.MaxLag)
	case c.MaxLagTime < 100*time.Millisecond:
		return fmt.Errorf("replication.max-lag-time %v: want at least 100ms", c.MaxLagTime)
	case c.MaxFrame < 64<<10 || c.MaxFrame > 512<<20:
		return fmt.Errorf("replication.max-frame %d: want 64 KiB..512 MiB", c.MaxFrame)
	case c.Lease < 100*time.Millisecond:
		return fmt.Errorf("replication.lease %v: want at least 100ms", c.Lease)
	}
	return nil
}
