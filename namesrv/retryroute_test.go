package namesrv

import (
	"slices"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// A broker that registers AnyRetryTopic serves every group's retry topic,
// beside the brokers that register the group's own; AnyRetryTopic is no
// topic of its own.
func TestAnyRetryTopicRoute(t *testing.T) {
	r := newRegistry()
	now := time.Unix(1000, 0)
	rw := remoting.PermRead | remoting.PermWrite
	anyRetry := remoting.TopicConfig{TopicName: AnyRetryTopic, ReadQueueNums: 1, WriteQueueNums: 1, Perm: rw}
	r.register(Broker{Cluster: "c", Name: "broker-a", ID: 0, Addr: "10.0.0.1:10911"}, []remoting.TopicConfig{anyRetry}, "conn1", now)
	r.register(Broker{Cluster: "c", Name: "broker-b", ID: 0, Addr: "10.0.0.2:10911"},
		[]remoting.TopicConfig{{TopicName: "%RETRY%known", ReadQueueNums: 1, WriteQueueNums: 1, Perm: rw}}, "conn2", now)

	rd, ok := r.route("%RETRY%new-group")
	if !ok || len(rd.BrokerDatas) != 1 || rd.BrokerDatas[0].BrokerName != "broker-a" || rd.QueueDatas[0].ReadQueueNums != 1 {
		t.Fatalf("a new group's retry route: %+v %v", rd, ok)
	}
	rd, ok = r.route("%RETRY%known")
	if !ok || len(rd.BrokerDatas) != 2 {
		t.Fatalf("a known group's retry route, by both brokers: %+v %v", rd, ok)
	}
	for _, topic := range []string{"%DLQ%new-group", "orders"} {
		if _, ok := r.route(topic); ok {
			t.Errorf("%s routed through %s", topic, AnyRetryTopic)
		}
	}
	if got := r.topics(); !slices.Equal(got, []string{"%RETRY%known"}) {
		t.Fatalf("topics %v: %s listed", got, AnyRetryTopic)
	}
}
