package namesrv

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

func TestRouteMergesMasterAndReplicas(t *testing.T) {
	r := newRegistry()
	now := time.Unix(1000, 0)
	tc := remoting.TopicConfig{TopicName: "devices", ReadQueueNums: 8, WriteQueueNums: 8, Perm: remoting.PermRead | remoting.PermWrite}
	r.register(Broker{Cluster: "c", Name: "broker-a", ID: 0, Addr: "10.0.0.1:10911"}, []remoting.TopicConfig{tc}, "conn1", now)
	r.register(Broker{Cluster: "c", Name: "broker-a", ID: 1, Addr: "10.0.0.2:10911"}, []remoting.TopicConfig{{TopicName: "devices", ReadQueueNums: 8, Perm: remoting.PermRead}}, "conn2", now)
	r.register(Broker{Cluster: "c", Name: "broker-b", ID: 0, Addr: "10.0.0.3:10911"}, []remoting.TopicConfig{tc, {TopicName: "other", ReadQueueNums: 1, WriteQueueNums: 1}}, "conn3", now.Add(time.Minute))
	rd, ok := r.route("devices")
	if !ok || len(rd.BrokerDatas) != 2 || len(rd.QueueDatas) != 2 {
		t.Fatalf("route: %+v", rd)
	}
	if a := rd.BrokerDatas[0]; a.BrokerName != "broker-a" || a.BrokerAddrs[0] != "10.0.0.1:10911" || a.BrokerAddrs[1] != "10.0.0.2:10911" {
		t.Fatalf("broker-a: %+v", a)
	}
	if q := rd.QueueDatas[0]; q.WriteQueueNums != 8 || q.Perm != remoting.PermRead|remoting.PermWrite {
		t.Fatalf("queues come from the master: %+v", q)
	}
	if _, ok := r.route("nope"); ok {
		t.Fatal("a route for a topic nobody serves")
	}
	if got := r.topics(); len(got) != 2 {
		t.Fatalf("topics %v", got)
	}
	if gone := r.expire(now.Add(30 * time.Second)); len(gone) != 2 {
		t.Fatalf("expired %v, want the two silent brokers", gone)
	}
	if gone := r.connClosed("conn3"); len(gone) != 1 || gone[0].Name != "broker-b" {
		t.Fatalf("conn closed dropped %v", gone)
	}
	if len(r.brokers) != 0 {
		t.Fatal("brokers left")
	}
}

func start(t *testing.T, opts Options) string {
	t.Helper()
	_, addr := startServer(t, opts)
	return addr
}

func dial(t *testing.T, addr string) *remoting.Client {
	t.Helper()
	c, err := remoting.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func invoke(t *testing.T, c *remoting.Client, req *remoting.Command) *remoting.Command {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Invoke(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func getRoute(t *testing.T, c *remoting.Client, topic string) (remoting.RouteData, error) {
	resp := invoke(t, c, remoting.NewRequest(remoting.GetRouteInfoByTopic, remoting.Pairs("topic", topic), nil))
	if err := remoting.ResponseError(resp); err != nil {
		return remoting.RouteData{}, err
	}
	var rd remoting.RouteData
	if err := json.Unmarshal(resp.Body, &rd); err != nil {
		t.Fatal(err)
	}
	return rd, nil
}

func TestRegisterAndRoute(t *testing.T) {
	addr := start(t, Options{})
	broker := dial(t, addr)
	req, err := RegisterRequest(Broker{Cluster: "DefaultCluster", Name: "broker-a", ID: 0, Addr: "127.0.0.1:10911"},
		[]remoting.TopicConfig{{TopicName: "TopicTest", ReadQueueNums: 4, WriteQueueNums: 4, Perm: 6}})
	if err != nil {
		t.Fatal(err)
	}
	if err := remoting.ResponseError(invoke(t, broker, req)); err != nil {
		t.Fatal(err)
	}
	client := dial(t, addr)
	rd, err := getRoute(t, client, "TopicTest")
	if err != nil || rd.BrokerDatas[0].BrokerAddrs[0] != "127.0.0.1:10911" || rd.QueueDatas[0].WriteQueueNums != 4 {
		t.Fatalf("route: %+v %v", rd, err)
	}
	if _, err := getRoute(t, client, "nope"); !errors.Is(err, remoting.ErrTopicNotExist) {
		t.Fatalf("route of an unknown topic: %v", err)
	}
	resp := invoke(t, client, remoting.NewRequest(remoting.GetBrokerClusterInfo, nil, nil))
	var ci remoting.ClusterInfo
	if json.Unmarshal(resp.Body, &ci); len(ci.ClusterAddrTable["DefaultCluster"]) != 1 {
		t.Fatalf("cluster info %s", resp.Body)
	}
	if err := remoting.ResponseError(invoke(t, client, remoting.NewRequest(remoting.PullMessage, nil, nil))); !errors.Is(err, remoting.ErrNotSupported) {
		t.Fatalf("unsupported code: %v", err)
	}

	// The broker's connection closes: its routes go at once.
	broker.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := getRoute(t, client, "TopicTest"); errors.Is(err, remoting.ErrTopicNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the route outlived its broker's connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSilentBrokerExpires(t *testing.T) {
	addr := start(t, Options{BrokerTimeout: 200 * time.Millisecond})
	c := dial(t, addr)
	req, _ := RegisterRequest(Broker{Cluster: "c", Name: "b", ID: 0, Addr: "127.0.0.1:1"}, []remoting.TopicConfig{{TopicName: "t", ReadQueueNums: 1, WriteQueueNums: 1, Perm: 6}})
	invoke(t, c, req)
	if _, err := getRoute(t, c, "t"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := getRoute(t, c, "t"); errors.Is(err, remoting.ErrTopicNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a silent broker was not dropped")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
