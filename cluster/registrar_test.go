package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/coretest"
	"github.com/ferrymq/ferry/frontends/native"
	"github.com/ferrymq/ferry/namesrv"
	"github.com/ferrymq/ferry/remoting"
)

// logBuf is a log that tests read while servers write it.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startNameServer(t *testing.T, k *clusterauth.Key) (*namesrv.Server, string) {
	t.Helper()
	ns := namesrv.New(namesrv.Options{ClusterKey: k, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ns.Serve(ln)
	t.Cleanup(func() { ns.Close() })
	return ns, ln.Addr().String()
}

// startRegistering serves a broker with a native front-end that registers
// with ns every 20 ms; opts.Identity.Name "" is broker-a.
func startRegistering(t *testing.T, ns string, opts cluster.RegistrarOptions) (*native.Server, *logBuf) {
	t.Helper()
	log := &logBuf{}
	opts.Logger = slog.New(slog.NewTextHandler(log, nil))
	opts.NameServers = []string{ns}
	opts.Interval = 20 * time.Millisecond
	if opts.Identity.Name == "" {
		opts.Identity.Name = "broker-a"
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := newCore(t) // closed after the cleanup below
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := native.New(b, native.Options{Logger: quiet})
	opts.Endpoint = s
	r, err := cluster.NewRegistrar(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		r.Close()
		s.Close()
		<-served
	})
	return s, log
}

// brokersOf is the addresses serving topic at the NameServer ns, by broker
// name (none when no route).
func brokersOf(t *testing.T, ns, topic string) map[string]string {
	t.Helper()
	c, err := remoting.Dial(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Invoke(ctx, remoting.NewRequest(remoting.GetRouteInfoByTopic, remoting.Pairs("topic", topic), nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := remoting.ResponseError(resp); errors.Is(err, remoting.ErrTopicNotExist) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	var rd remoting.RouteData
	if err := json.Unmarshal(resp.Body, &rd); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, bd := range rd.BrokerDatas {
		out[bd.BrokerName] = bd.BrokerAddrs[0]
	}
	return out
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func key(t *testing.T, secret string) *clusterauth.Key {
	t.Helper()
	k, err := clusterauth.NewKey([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRegisterSigned(t *testing.T) {
	k := key(t, "the cluster's shared secret")
	ns, nsAddr := startNameServer(t, k)

	a, _ := startRegistering(t, nsAddr, cluster.RegistrarOptions{ClusterKey: k})
	eventually(t, "the signed broker's route", func() bool { return brokersOf(t, nsAddr, "devices")["broker-a"] == a.Addr() })
	if n := ns.Stats().Refused; n["replay"] != 0 || n["unsigned"] != 0 {
		t.Fatalf("refusals of a good broker: %v", n)
	}

	// A broker with another secret, or none, is refused, says so at
	// ERROR, and keeps trying.
	for _, tc := range []struct {
		name, reason, says string
		key                *clusterauth.Key
	}{
		{"broker-wrong", "bad_signature", "bad signature", key(t, "not the cluster's secret")},
		{"broker-none", "unsigned", "not signed", nil},
	} {
		_, log := startRegistering(t, nsAddr, cluster.RegistrarOptions{Identity: cluster.Identity{Name: tc.name}, ClusterKey: tc.key})
		eventually(t, tc.name+" refused again and again", func() bool { return ns.Stats().Refused[tc.reason] >= 3 })
		eventually(t, tc.name+" logs the refusal", func() bool {
			return strings.Contains(log.String(), "level=ERROR msg=\"cluster: the NameServer refused this broker's registration")
		})
		if l := log.String(); !strings.Contains(l, tc.says) {
			t.Errorf("%s's log does not say %q:\n%s", tc.name, tc.says, l)
		}
		if got := brokersOf(t, nsAddr, "devices"); len(got) != 1 {
			t.Fatalf("route %v", got)
		}
	}
}

func TestRegisterNameTaken(t *testing.T) {
	k := key(t, "the cluster's shared secret")
	ns, nsAddr := startNameServer(t, k)
	a, _ := startRegistering(t, nsAddr, cluster.RegistrarOptions{ClusterKey: k})
	eventually(t, "the first broker's route", func() bool { return brokersOf(t, nsAddr, "devices")["broker-a"] == a.Addr() })
	b, log := startRegistering(t, nsAddr, cluster.RegistrarOptions{ClusterKey: k}) // broker-a too: the default
	eventually(t, "the second broker refused, again and again", func() bool { return ns.Stats().Refused["conflict"] >= 3 })
	eventually(t, "the second broker logs the refusal", func() bool { return strings.Contains(log.String(), "level=ERROR") })
	l := log.String()
	for _, want := range []string{a.Addr(), b.Addr(), "--broker-name"} {
		if !strings.Contains(l, want) {
			t.Errorf("the refusal does not name %q:\n%s", want, l)
		}
	}
	if got := brokersOf(t, nsAddr, "devices"); len(got) != 1 || got["broker-a"] != a.Addr() {
		t.Fatalf("route %v", got)
	}
}

// Without a secret anywhere, a broker on loopback registers unsigned.
func TestRegisterLoopbackUnsigned(t *testing.T) {
	_, nsAddr := startNameServer(t, nil)
	a, _ := startRegistering(t, nsAddr, cluster.RegistrarOptions{})
	eventually(t, "the unsigned broker's route", func() bool { return brokersOf(t, nsAddr, "devices")["broker-a"] == a.Addr() })
}

// newCore is a broker core over a store of its own, with topic devices.
func newCore(t *testing.T) *core.Broker {
	t.Helper()
	b := coretest.New(t, core.Config{AutoCreateTopics: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := b.CreateTopic("devices", 4); err != nil {
		t.Fatal(err)
	}
	return b
}

// clusterInfo is the NameServer's GET_BROKER_CLUSTER_INFO answer.
func clusterInfo(t *testing.T, ns string) remoting.ClusterInfo {
	t.Helper()
	c, err := remoting.Dial(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Invoke(ctx, remoting.NewRequest(remoting.GetBrokerClusterInfo, nil, nil))
	if err == nil {
		err = remoting.ResponseError(resp)
	}
	if err != nil {
		t.Fatal(err)
	}
	var ci remoting.ClusterInfo
	if err := json.Unmarshal(resp.Body, &ci); err != nil {
		t.Fatal(err)
	}
	return ci
}

// A broker with no native listener registers its name all the same:
// without an advertised address under remoting.NoListenerAddr and no
// topics (listed, never routed), with one under it and its topics. Two
// such brokers of different names both register; at Close each
// unregisters, before its connection closes.
func TestRegisterWithoutListener(t *testing.T) {
	k := key(t, "the cluster's shared secret")
	ns, nsAddr := startNameServer(t, k)
	start := func(name, advertise string) *cluster.Registrar {
		return startRegistrar(t, newCore(t), cluster.RegistrarOptions{Identity: cluster.Identity{Cluster: "east", Name: name},
			NameServers: []string{nsAddr}, Interval: 20 * time.Millisecond, Advertise: advertise, ClusterKey: k})
	}
	a, b := start("broker-a", ""), start("broker-b", "")
	proxied := start("broker-p", "127.0.0.1:1")
	eventually(t, "three brokers listed", func() bool { return len(clusterInfo(t, nsAddr).BrokerAddrTable) == 3 })
	ci := clusterInfo(t, nsAddr)
	for name, want := range map[string]string{"broker-a": remoting.NoListenerAddr("broker-a", 0), "broker-b": remoting.NoListenerAddr("broker-b", 0), "broker-p": "127.0.0.1:1"} {
		bd := ci.BrokerAddrTable[name]
		if bd.Cluster != "east" || bd.BrokerAddrs[0] != want || ci.LastSeen[want] == 0 {
			t.Errorf("%s: %+v, last seen %d; want address %s", name, bd, ci.LastSeen[want], want)
		}
		if remoting.HasListener(want) != (name == "broker-p") {
			t.Errorf("HasListener(%q) wrong", want)
		}
	}
	if got := ci.ClusterAddrTable["east"]; len(got) != 3 {
		t.Errorf("cluster east: %v", got)
	}
	eventually(t, "devices routed to the advertised broker only", func() bool {
		got := brokersOf(t, nsAddr, "devices")
		return len(got) == 1 && got["broker-p"] == "127.0.0.1:1"
	})
	if addr, reachable, ok := a.Addr(); reachable || !ok || addr != remoting.NoListenerAddr("broker-a", 0) {
		t.Errorf("Addr: %q %v %v", addr, reachable, ok)
	}
	if st := a.Stats(); st.OK < 1 || st.Refused != 0 || st.Registered != 1 || st.NameServers != 1 {
		t.Errorf("stats %+v", st)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ferry_cluster_broker_info The broker's identity at the NameServers (docs/cluster.md); always 1.
# TYPE ferry_cluster_broker_info gauge
ferry_cluster_broker_info{broker="broker-a",cluster="east",id="0",role="master"} 1
# HELP ferry_cluster_namesrvs_registered NameServers whose latest registration of this broker was accepted.
# TYPE ferry_cluster_namesrvs_registered gauge
ferry_cluster_namesrvs_registered 1
`), "ferry_cluster_broker_info", "ferry_cluster_namesrvs_registered"); err != nil {
		t.Error(err)
	}

	a.Close()
	b.Close()
	proxied.Close()
	eventually(t, "all unregistered", func() bool { return ns.Stats().Brokers == 0 })
	st := ns.Stats()
	if st.DroppedClosed != 0 {
		t.Errorf("%d brokers dropped by their connection closing: they did not unregister", st.DroppedClosed)
	}
	for reason, n := range st.Refused {
		if n != 0 {
			t.Errorf("%d requests refused (%s)", n, reason)
		}
	}
}

// startRegistrar starts a registrar of b, quiet unless opts has a
// Logger, closed when the test ends.
func startRegistrar(t *testing.T, b *core.Broker, opts cluster.RegistrarOptions) *cluster.Registrar {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r, err := cluster.NewRegistrar(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(func() { r.Close() })
	return r
}

// hourly registers broker name, reachable at a made-up address, with the
// NameServer at ns: at the start, and then only when something changes
// within the test.
func hourly(name, ns string) cluster.RegistrarOptions {
	return cluster.RegistrarOptions{Identity: cluster.Identity{Name: name}, NameServers: []string{ns},
		Interval: time.Hour, Advertise: "127.0.0.1:1"}
}

// A topic created on the core is registered at once, not at the next
// interval.
func TestRegisterOnTopicChange(t *testing.T) {
	_, nsAddr := startNameServer(t, nil)
	b := newCore(t)
	startRegistrar(t, b, hourly("broker-a", nsAddr))
	eventually(t, "the first registration", func() bool { return brokersOf(t, nsAddr, "devices")["broker-a"] != "" })
	if _, err := b.CreateTopic("new", 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new topic routed", func() bool { return brokersOf(t, nsAddr, "new")["broker-a"] != "" })
}
