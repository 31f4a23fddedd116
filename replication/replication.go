// Package replication copies a broker's commit log to its replicas, record
// for record, and tells the master when the replicas have what it
// acknowledges (docs/replication.md). It works below the core, on the
// store's raw API (ReadRaw, AppendRaw, Truncate): a replica's log is the
// master's, at the same offsets, so message ids, queue offsets and the
// state in the log carry over.
//
// A Master serves replicas on a listener it is given: per replica one
// goroutine sends the log and one reads the acknowledgements. A Replica
// runs one fetcher that dials the master, handshakes, truncates where the
// logs diverge, copies and acknowledges, and redials with back-off.
// Which broker is master, and the in-sync set, are the controller's
// decisions; the role manager applies them (SetInSync, Follow).
package replication

import (
	"errors"
	"fmt"
	"time"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/storage"
)

// Config configures a master or a replica; replconf maps the file's keys
// onto it.
type Config struct {
	// Mode is "async" or "sync": in sync mode the master is the store's
	// ack gate (storage.SetAckGate).
	Mode string
	// MinInsync counts the master: acknowledged writes are on at least
	// MinInsync members (sync mode).
	MinInsync int
	// MaxLag and MaxLagTime bound how far an in-sync replica may trail.
	MaxLag     int64
	MaxLagTime time.Duration
	// MaxFrame bounds a frame; it must hold the largest record.
	MaxFrame int
	// Group is the broker group; a master refuses replicas of another one
	// ("" accepts any).
	Group string
	// Key, when set, authenticates the handshake with the cluster secret:
	// a master refuses a replica that cannot prove it, and a replica signs.
	Key *clusterauth.Key
}

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = "async"
	}
	if c.MinInsync < 1 {
		c.MinInsync = 1
	}
	if c.MaxLag <= 0 {
		c.MaxLag = 64 << 20
	}
	if c.MaxLagTime <= 0 {
		c.MaxLagTime = 10 * time.Second
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = 5 << 20
	}
	return c
}

// Errors a caller may test with errors.Is.
var (
	// ErrNotEnoughReplicas: a sync master has fewer in-sync members than
	// min-insync-replicas and refuses to acknowledge.
	ErrNotEnoughReplicas = fmt.Errorf("%w: fewer in-sync replicas than replication.min-insync-replicas", storage.ErrNotReplicated)
	// ErrMasterClosed: the master stopped; what it was waiting for is unknown.
	ErrMasterClosed = errors.New("replication: master closed")
	// ErrRefused: the master refused the replica's handshake; the reason follows.
	ErrRefused = errors.New("replication: refused by the master")
)

// Timers of the protocol.
const (
	handshakeTimeout = 10 * time.Second
	heartbeatEvery   = time.Second            // master: an empty DATA when idle
	ackEvery         = 200 * time.Millisecond // replica: an ACK at least this often
	idleTimeout      = 10 * time.Second       // either side: silence this long ends the connection
	maxBackoff       = 5 * time.Second
)

// ReplicaStatus is one replica as the master (or the replica itself) sees it.
type ReplicaStatus struct {
	ID        int64
	Addr      string // the replica's address at the master; the master's at a replica
	Connected bool
	Acked     int64         // log end the replica has under its flush policy
	Lag       int64         // bytes behind the master's end
	LagTime   time.Duration // since the replica last had everything the master had
	InSync    bool          // in the controller-approved set (at the master)
}
