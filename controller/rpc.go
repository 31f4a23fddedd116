package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// Request codes of the controller's RPC, in the range RocketMQ 5's
// controller uses. The bodies are Ferry's JSON (below), not RocketMQ's:
// a RocketMQ broker cannot use a Ferry controller.
const (
	// CodeHeartbeat (RocketMQ's BROKER_HEARTBEAT): body Heartbeat, answer
	// GroupState. The first heartbeat of a broker registers it.
	CodeHeartbeat int16 = 904
	// CodeAlterInSync (ALTER_SYNC_STATE_SET): body alterRequest, answer
	// GroupState.
	CodeAlterInSync int16 = 1001
	// CodeGetGroups (GET_METADATA_INFO): no body, answer groupsAnswer.
	CodeGetGroups int16 = 1005
)

// Response codes, RocketMQ's controller ones.
const (
	// CodeFencedEpoch: the request names a master or an epoch that is not
	// the group's current one.
	CodeFencedEpoch int16 = 2000
	// CodeInvalidRequest: a request that can never succeed as it is.
	CodeInvalidRequest int16 = 2005
	// CodeNotLeader: this controller is not the Raft leader; the ext
	// field leaderAddr is the leader's RPC address when known.
	CodeNotLeader int16 = 2007
)

// FieldLeaderAddr is the ext field of a CodeNotLeader answer.
const FieldLeaderAddr = "leaderAddr"

// Sentinels to test a Client's errors against with errors.Is.
var (
	ErrFencedEpoch    = &remoting.Error{Code: CodeFencedEpoch}
	ErrInvalidRequest = &remoting.Error{Code: CodeInvalidRequest}
)

// MaxFrame bounds a request to the controller (the largest is a heartbeat
// or an in-sync set: well under a kilobyte).
const MaxFrame = 64 << 10

// maxAddrLen bounds an address a broker sends.
const maxAddrLen = 256

// Heartbeat is what a broker sends the controller every second.
type Heartbeat struct {
	Cluster         string `json:"cluster"`
	Group           string `json:"group"` // the broker name
	ID              int64  `json:"id"`
	ReplicationAddr string `json:"replicationAddr"`
	NativeAddr      string `json:"nativeAddr"`
	Epoch           int64  `json:"epoch"`  // the epoch the broker is in (its log's latest)
	LogEnd          int64  `json:"logEnd"` // its log's end offset: elections prefer the largest
}

// GroupState is a group as the controller leader sees it.
type GroupState struct {
	Group            string        `json:"group"`
	Cluster          string        `json:"cluster"`
	Epoch            int64         `json:"epoch"`
	MasterID         int64         `json:"masterId"` // -1: none
	MasterAddr       string        `json:"masterAddr"`
	MasterNativeAddr string        `json:"masterNativeAddr"`
	InSync           []int64       `json:"inSync"` // the master included
	Brokers          []BrokerState `json:"brokers"`
}

// BrokerState is a member of a group.
type BrokerState struct {
	ID              int64     `json:"id"`
	ReplicationAddr string    `json:"replicationAddr"`
	NativeAddr      string    `json:"nativeAddr"`
	LogEnd          int64     `json:"logEnd"`   // as its latest heartbeat to this leader said
	LastSeen        time.Time `json:"lastSeen"` // zero: no heartbeat since this leader took over
	Alive           bool      `json:"alive"`    // a heartbeat within controller.master-timeout
}

type alterRequest struct {
	Group    string  `json:"group"`
	MasterID int64   `json:"masterId"`
	Epoch    int64   `json:"epoch"`
	InSync   []int64 `json:"inSync"`
}

type groupsAnswer struct {
	Groups []GroupState `json:"groups"`
}

func (hb Heartbeat) check() error {
	if err := checkName("cluster", hb.Cluster); err != nil {
		return err
	}
	if err := checkName("group", hb.Group); err != nil {
		return err
	}
	if hb.ID < 0 || hb.ID > 1<<20 {
		return fmt.Errorf("broker id %d: want 0 to %d", hb.ID, 1<<20)
	}
	for _, a := range []string{hb.ReplicationAddr, hb.NativeAddr} {
		if len(a) > maxAddrLen {
			return fmt.Errorf("address of %d bytes, want at most %d", len(a), maxAddrLen)
		}
	}
	if hb.ReplicationAddr != "" {
		if _, _, err := net.SplitHostPort(hb.ReplicationAddr); err != nil {
			return fmt.Errorf("replication address %q: want host:port", hb.ReplicationAddr)
		}
	}
	return nil
}

func (r alterRequest) check() error {
	if err := checkName("group", r.Group); err != nil {
		return err
	}
	if len(r.InSync) > MaxGroupBrokers {
		return fmt.Errorf("in-sync set of %d brokers, want at most %d", len(r.InSync), MaxGroupBrokers)
	}
	return nil
}

// checkName checks a broker or cluster name as cluster.CheckName does: 1
// to 64 letters, digits, '-', '_' and '.'.
func checkName(what, name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("%s name of %d bytes, want 1 to 64", what, len(name))
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%s name %q: %q is not allowed", what, name, c)
		}
	}
	return nil
}

// decode unmarshals a request's body into v and checks it.
func decode(req *remoting.Command, v interface{ check() error }) error {
	if len(req.Body) == 0 {
		return errors.New("empty body")
	}
	if err := json.Unmarshal(req.Body, v); err != nil {
		return err
	}
	return v.check()
}
