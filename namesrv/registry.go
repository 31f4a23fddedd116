// Package namesrv is Ferry's NameServer: a light, nearly stateless route
// registry in RocketMQ's model. Brokers register their topics and queues
// and heartbeat by registering again; clients ask which brokers serve a
// topic. NameServers do not talk to each other: brokers register with
// every one. The wire protocol is RocketMQ's (package remoting), so
// RocketMQ's clients can use it too.
package namesrv

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// Broker identifies one registered broker process.
type Broker struct {
	Cluster string
	Name    string // brokers of one name are a master (id 0) and its replicas
	ID      int64
	Addr    string
	// Epoch is the controller's epoch of a replicated broker group's master
	// (docs/replication.md); 0 without a controller. A master of a later
	// epoch takes the name and id from a live one of an earlier epoch: the
	// deposed master may not have noticed yet.
	Epoch int64
}

// same says whether a and b name the same broker at the same address,
// whatever their epochs.
func same(a, b Broker) bool {
	a.Epoch, b.Epoch = 0, 0
	return a == b
}

type brokerState struct {
	Broker
	topics   map[string]remoting.TopicConfig
	lastSeen time.Time
	conn     any // the connection it registered on; dropped when it closes
}

// registry is the NameServer's state. It is not safe for concurrent use:
// Server guards it. Time comes in as arguments, so it is tested without
// clocks.
type registry struct {
	brokers map[string]*brokerState // by address
}

func newRegistry() *registry { return &registry{brokers: map[string]*brokerState{}} }

// register records b with its topics (a full list: what it no longer has is
// forgotten). Another entry of b's name and id, at another address, goes:
// admitRegister let it through only when it is dead or from conn.
func (r *registry) register(b Broker, topics []remoting.TopicConfig, conn any, now time.Time) {
	st := &brokerState{Broker: b, topics: make(map[string]remoting.TopicConfig, len(topics)), lastSeen: now, conn: conn}
	for _, t := range topics {
		st.topics[t.TopicName] = t
	}
	for addr, o := range r.brokers {
		if addr != b.Addr && o.Name == b.Name && o.ID == b.ID {
			delete(r.brokers, addr)
		}
	}
	r.brokers[b.Addr] = st
}

// refusal is why the registry refuses a broker's request: a reason (an
// index of refuseReasons) and a message for the sender and the log.
type refusal struct {
	reason int
	msg    string
}

// admitRegister decides whether conn may register b with topics. signed
// says the request proved the cluster secret; brokers seen since liveSince
// are live. It refuses
//   - b's name and id held by a live broker at another address, on another
//     connection, of b's epoch or a later one (two brokers configured
//     alike: the second would take the first's routes);
//   - b's address registered on another connection, unless the request is
//     signed and names the same broker (a broker that reconnected), or,
//     unsigned, names the same broker and drops none of its topics.
func (r *registry) admitRegister(b Broker, topics []remoting.TopicConfig, conn any, signed bool, liveSince time.Time) *refusal {
	for addr, o := range r.brokers {
		if addr != b.Addr && o.Name == b.Name && o.ID == b.ID && o.conn != conn && !o.lastSeen.Before(liveSince) && b.Epoch <= o.Epoch {
			return &refusal{refuseConflict, fmt.Sprintf(
				"broker %q id %d is already registered by the live broker at %s (cluster %q); refused for %s (cluster %q): "+
					"give each broker a distinct --broker-name (config broker.name)", b.Name, b.ID, o.Addr, o.Cluster, b.Addr, b.Cluster)}
		}
	}
	cur := r.brokers[b.Addr]
	if cur == nil || cur.conn == conn {
		return nil
	}
	if !same(cur.Broker, b) { // cur is at b.Addr: another name, id or cluster
		return &refusal{refuseNotOwner, fmt.Sprintf("address %s is registered as broker %q id %d (cluster %q) on another connection; refused for broker %q id %d (cluster %q)",
			b.Addr, cur.Name, cur.ID, cur.Cluster, b.Name, b.ID, b.Cluster)}
	}
	if signed {
		return nil
	}
	have := make(map[string]bool, len(topics))
	for _, t := range topics {
		have[t.TopicName] = true
	}
	for t := range cur.topics {
		if !have[t] {
			return &refusal{refuseNotOwner, fmt.Sprintf("broker %q at %s was registered on another connection, and this unsigned registration would drop its topic %q",
				b.Name, b.Addr, t)}
		}
	}
	return nil
}

// admitUnregister decides whether conn may unregister the broker b names:
// only the connection that registered it may, or a signed request naming
// the same broker at the same address. An address nobody registered is
// nothing to refuse.
func (r *registry) admitUnregister(b Broker, conn any, signed bool) *refusal {
	cur := r.brokers[b.Addr]
	if cur == nil || cur.conn == conn {
		return nil
	}
	if signed && same(cur.Broker, b) { // cur is at b.Addr: the same name, id and cluster
		return nil
	}
	return &refusal{refuseNotOwner, fmt.Sprintf("broker %q at %s was registered on another connection: only that connection, "+
		"or a broker proving the cluster secret with the same name, id and address, may unregister it", cur.Name, b.Addr)}
}

func (r *registry) unregister(addr string) bool {
	_, ok := r.brokers[addr]
	delete(r.brokers, addr)
	return ok
}

// expire drops brokers silent since before deadline and returns them.
func (r *registry) expire(deadline time.Time) []Broker {
	var gone []Broker
	for addr, st := range r.brokers {
		if st.lastSeen.Before(deadline) {
			gone = append(gone, st.Broker)
			delete(r.brokers, addr)
		}
	}
	return gone
}

// connClosed drops the brokers that registered on conn.
func (r *registry) connClosed(conn any) []Broker {
	var gone []Broker
	for addr, st := range r.brokers {
		if st.conn == conn {
			gone = append(gone, st.Broker)
			delete(r.brokers, addr)
		}
	}
	return gone
}

// AnyRetryTopic, registered by a broker, says that it serves the retry
// topic (%RETRY%<group>) of any consumer group, known to it or not: a
// Ferry broker makes a group's retry topic when the group first gives a
// message back. A new group's consumer asks for its retry topic's route
// before its first heartbeat tells any broker of the group, and RocketMQ's
// clients ask again only at their 30 s route poll: without this, the
// group's first retries wait for that poll.
const AnyRetryTopic = retryPrefix

const retryPrefix = "%RETRY%"

// route returns the route of topic, false when no broker serves it. Queues
// come from the master (id 0) when it is there, else from a replica. A
// retry topic is served by the brokers that register it and by those that
// register AnyRetryTopic.
func (r *registry) route(topic string) (remoting.RouteData, bool) {
	byName := map[string]*remoting.BrokerData{}
	queues := map[string]remoting.QueueData{}
	queueFrom := map[string]int64{}
	anyRetry := len(topic) > len(retryPrefix) && strings.HasPrefix(topic, retryPrefix)
	for _, st := range r.brokers {
		tc, ok := st.topics[topic]
		if !ok && anyRetry {
			tc, ok = st.topics[AnyRetryTopic]
		}
		if !ok {
			continue
		}
		bd := byName[st.Name]
		if bd == nil {
			bd = &remoting.BrokerData{Cluster: st.Cluster, BrokerName: st.Name, BrokerAddrs: map[int64]string{}}
			byName[st.Name] = bd
		}
		bd.BrokerAddrs[st.ID] = st.Addr
		if from, seen := queueFrom[st.Name]; !seen || st.ID < from {
			queueFrom[st.Name] = st.ID
			queues[st.Name] = remoting.QueueData{BrokerName: st.Name, ReadQueueNums: tc.ReadQueueNums,
				WriteQueueNums: tc.WriteQueueNums, Perm: tc.Perm, TopicSysFlag: tc.TopicSysFlag}
		}
	}
	if len(byName) == 0 {
		return remoting.RouteData{}, false
	}
	var rd remoting.RouteData
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rd.BrokerDatas = append(rd.BrokerDatas, *byName[n])
		rd.QueueDatas = append(rd.QueueDatas, queues[n])
	}
	return rd, true
}

// topics lists every topic some broker serves (AnyRetryTopic is no
// topic).
func (r *registry) topics() []string {
	set := map[string]bool{}
	for _, st := range r.brokers {
		for t := range st.topics {
			if t != AnyRetryTopic {
				set[t] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func (r *registry) clusterInfo() remoting.ClusterInfo {
	ci := remoting.ClusterInfo{BrokerAddrTable: map[string]remoting.BrokerData{}, ClusterAddrTable: map[string][]string{},
		LastSeen: map[string]int64{}}
	for _, st := range r.brokers {
		ci.LastSeen[st.Addr] = st.lastSeen.UnixMilli()
		bd, ok := ci.BrokerAddrTable[st.Name]
		if !ok {
			bd = remoting.BrokerData{Cluster: st.Cluster, BrokerName: st.Name, BrokerAddrs: map[int64]string{}}
			ci.ClusterAddrTable[st.Cluster] = append(ci.ClusterAddrTable[st.Cluster], st.Name)
		}
		bd.BrokerAddrs[st.ID] = st.Addr
		ci.BrokerAddrTable[st.Name] = bd
	}
	for c := range ci.ClusterAddrTable {
		sort.Strings(ci.ClusterAddrTable[c])
	}
	return ci
}
