package remoting

import (
	"strconv"
	"strings"
)

// The NameServer's wire types: what a broker registers and what a client
// is answered, as RocketMQ's JSON has them. They live with the wire format
// so that a client needs no server package to read them.

// Permissions of a topic's queues on a broker (RocketMQ's PermName).
const (
	PermRead  = 1 << 2
	PermWrite = 1 << 1
)

// TopicConfig is a topic as a broker registers it.
type TopicConfig struct {
	TopicName      string `json:"topicName"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
	TopicSysFlag   int    `json:"topicSysFlag"`
	Order          bool   `json:"order"`
}

// RouteData is a topic's route, as RocketMQ's TopicRouteData.
type RouteData struct {
	OrderTopicConf string       `json:"orderTopicConf,omitempty"`
	QueueDatas     []QueueData  `json:"queueDatas"`
	BrokerDatas    []BrokerData `json:"brokerDatas"`
}

// QueueData is a topic's queues on the brokers of one name.
type QueueData struct {
	BrokerName     string `json:"brokerName"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
	TopicSysFlag   int    `json:"topicSysFlag"`
}

// BrokerData is the addresses of the brokers of one name, by broker id.
type BrokerData struct {
	Cluster     string           `json:"cluster"`
	BrokerName  string           `json:"brokerName"`
	BrokerAddrs map[int64]string `json:"brokerAddrs"`
}

// ClusterInfo is RocketMQ's ClusterInfo: brokers by name, names by cluster.
type ClusterInfo struct {
	BrokerAddrTable  map[string]BrokerData `json:"brokerAddrTable"`
	ClusterAddrTable map[string][]string   `json:"clusterAddrTable"`
	// LastSeen is Ferry's addition: when the NameServer last heard from
	// each broker (a registration), by address, in Unix milliseconds.
	// RocketMQ's clients ignore the field.
	LastSeen map[string]int64 `json:"ferryLastSeen,omitempty"`
}

// noListenerPrefix starts the address a broker registers when it has no
// native listener and no advertised address: see NoListenerAddr.
const noListenerPrefix = "no-listener/"

// NoListenerAddr is the address a broker without a native listener (and
// no advertised address) registers, so that the NameServers, which key
// brokers by address, still list it: unique per broker name and id, and
// not host:port, so nothing dials it. Such a broker registers no topics,
// so no route points at it; clients skip it (HasListener).
func NoListenerAddr(brokerName string, id int64) string {
	return noListenerPrefix + brokerName + "/" + strconv.FormatInt(id, 10)
}

// HasListener reports whether a registered broker address is one clients
// can dial: false for NoListenerAddr's.
func HasListener(addr string) bool { return !strings.HasPrefix(addr, noListenerPrefix) }
