// Package controllerconf is the configuration's controller section: the
// keys of the controller (the Raft group that elects each broker group's
// master, package controller) and the broker's list of controllers, their
// defaults and their checks. It depends on nothing of Ferry, so that
// package config assembles the file's schema with it while package
// controller owns it.
package controllerconf

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Section is the section's name in the file, the prefix of its keys
// (controller.addr) and of their FERRY_CONTROLLER_… variables.
const Section = "controller"

// Config is the controller section.
type Config struct {
	// Addrs is the broker side: the controllers' RPC addresses, comma
	// separated. "": no controller, the broker is a group of one (ferry
	// serve's default).
	Addrs string `koanf:"addrs"`

	// Enabled runs a controller inside ferry namesrv (--controller);
	// ferry controller runs one whatever it says.
	Enabled bool `koanf:"enabled"`
	// Addr is where the controller's RPC listener (brokers' heartbeats,
	// the RocketMQ remoting protocol) binds.
	Addr string `koanf:"addr"`
	// RaftAddr is where the Raft transport binds; "": the node's own
	// address in RaftPeers.
	RaftAddr string `koanf:"raft-addr"`
	// RaftPeers is every controller of the group, this one included:
	// id=host:port,… with the Raft addresses the others reach them at.
	// Every controller is given the same list.
	RaftPeers string `koanf:"raft-peers"`
	// NodeID is this controller's id in RaftPeers.
	NodeID string `koanf:"node-id"`
	// Dir holds raft.db (Raft's log and stable store) and snapshots/;
	// "": <data-dir>/controller.
	Dir string `koanf:"dir"`
	// MasterTimeout is how long a master may go without a heartbeat
	// before the controller elects another.
	MasterTimeout time.Duration `koanf:"master-timeout"`
	// UncleanElection lets the controller elect a broker outside the
	// in-sync set when no member of it is alive: availability bought with
	// the writes only the lost master had.
	UncleanElection bool `koanf:"unclean-election"`
	// RaftTimeout is Raft's heartbeat and election timeout: a follower
	// that hears nothing from the leader for 1 to 2 of it starts an
	// election.
	RaftTimeout time.Duration `koanf:"raft-timeout"`
	// HTTPAddr is where ferry controller serves its metrics and health,
	// or "off" (ferry namesrv --controller uses namesrv-http-addr).
	HTTPAddr string `koanf:"http-addr"`
}

// Default is the section where no source sets a key.
func Default() Config {
	return Config{
		Addr:          ":9878",
		MasterTimeout: 4 * time.Second,
		RaftTimeout:   500 * time.Millisecond,
		HTTPAddr:      ":8082",
	}
}

// Peer is one controller of RaftPeers.
type Peer struct {
	ID   string
	Addr string // host:port of its Raft transport
}

// MaxPeers bounds RaftPeers: Raft groups of more than seven gain nothing.
const MaxPeers = 7

// ParsePeers parses a RaftPeers list.
func ParsePeers(s string) ([]Peer, error) {
	var peers []Peer
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("controller.raft-peers: %q: want id=host:port", item)
		}
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("controller.raft-peers: %w", err)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "" || port == "0" {
			return nil, fmt.Errorf("controller.raft-peers: %q: want id=host:port with a port", item)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			return nil, fmt.Errorf("controller.raft-peers: %q: the host must be one the other controllers can dial, not %q", item, host)
		}
		if seen[id] {
			return nil, fmt.Errorf("controller.raft-peers: id %q appears twice", id)
		}
		seen[id] = true
		peers = append(peers, Peer{ID: id, Addr: addr})
	}
	if len(peers) > MaxPeers {
		return nil, fmt.Errorf("controller.raft-peers: %d controllers, want at most %d (three or five)", len(peers), MaxPeers)
	}
	return peers, nil
}

// checkID: 1 to 64 letters, digits, '-', '_' and '.'.
func checkID(id string) error {
	if len(id) > 64 {
		return fmt.Errorf("node id %q: %d bytes, want at most 64", id, len(id))
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("node id %q: %q is not allowed (letters, digits, '-', '_' and '.' are)", id, c)
		}
	}
	return nil
}

// SplitAddrs splits Addrs into its addresses.
func SplitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Validate reports the first key out of range, naming it.
func (c Config) Validate() error {
	for _, a := range SplitAddrs(c.Addrs) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("controller.addrs: %q: want host:port", a)
		}
	}
	if c.Addr == "" {
		return errors.New("controller.addr: must not be empty")
	}
	if c.MasterTimeout < time.Second {
		return fmt.Errorf("controller.master-timeout %v: want at least 1s (brokers heartbeat every second)", c.MasterTimeout)
	}
	if c.RaftTimeout < 50*time.Millisecond || c.RaftTimeout > time.Minute {
		return fmt.Errorf("controller.raft-timeout %v: want 50ms to 1m", c.RaftTimeout)
	}
	if c.HTTPAddr == "" {
		return errors.New("controller.http-addr: must not be empty (off disables it)")
	}
	peers, err := ParsePeers(c.RaftPeers)
	if err != nil {
		return err
	}
	if c.NodeID != "" {
		if err := checkID(c.NodeID); err != nil {
			return fmt.Errorf("controller.node-id: %w", err)
		}
		if len(peers) > 0 && c.Self(peers) == nil {
			return fmt.Errorf("controller.node-id %q: not one of controller.raft-peers", c.NodeID)
		}
	}
	return nil
}

// Self is this node's entry of peers, nil when none has NodeID.
func (c Config) Self(peers []Peer) *Peer {
	for i := range peers {
		if peers[i].ID == c.NodeID {
			return &peers[i]
		}
	}
	return nil
}

// CheckServer reports what a controller process needs besides Validate:
// the peers and its own id among them.
func (c Config) CheckServer() ([]Peer, error) {
	peers, err := ParsePeers(c.RaftPeers)
	if err != nil {
		return nil, err
	}
	if len(peers) == 0 {
		return nil, errors.New("controller.raft-peers (--raft-peers): a controller needs the list of every controller, itself included: id=host:port,…")
	}
	if c.NodeID == "" {
		return nil, errors.New("controller.node-id (--node-id): a controller needs its own id in controller.raft-peers")
	}
	if c.Self(peers) == nil {
		return nil, fmt.Errorf("controller.node-id %q: not one of controller.raft-peers", c.NodeID)
	}
	return peers, nil
}
