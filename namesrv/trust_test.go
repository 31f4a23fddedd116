package namesrv

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/remoting"
)

func clusterKey(t *testing.T, secret string) *clusterauth.Key {
	t.Helper()
	k, err := clusterauth.NewKey([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startServer is start that returns the server too, for its Stats.
func startServer(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(opts)
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

func registerReq(t *testing.T, b Broker, topics ...string) *remoting.Command {
	t.Helper()
	var tcs []remoting.TopicConfig
	for _, name := range topics {
		tcs = append(tcs, remoting.TopicConfig{TopicName: name, ReadQueueNums: 4, WriteQueueNums: 4, Perm: remoting.PermRead | remoting.PermWrite})
	}
	req, err := RegisterRequest(b, tcs)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func unregisterReq(b Broker) *remoting.Command {
	return remoting.NewRequest(remoting.UnregisterBroker, remoting.Pairs(
		"brokerName", b.Name, "brokerAddr", b.Addr, "clusterName", b.Cluster, "brokerId", "0",
	), nil)
}

func signed(t *testing.T, k *clusterauth.Key, req *remoting.Command) *remoting.Command {
	t.Helper()
	if err := k.Sign(req, time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

// refused checks that resp is NO_PERMISSION with a remark holding every
// one of want.
func refused(t *testing.T, what string, resp *remoting.Command, want ...string) {
	t.Helper()
	err := remoting.ResponseError(resp)
	if !errors.Is(err, remoting.ErrNoPermission) {
		t.Fatalf("%s: %v, want NO_PERMISSION", what, err)
	}
	for _, w := range want {
		if !strings.Contains(resp.Remark, w) {
			t.Errorf("%s: remark %q does not say %q", what, resp.Remark, w)
		}
	}
}

func accepted(t *testing.T, what string, resp *remoting.Command) {
	t.Helper()
	if err := remoting.ResponseError(resp); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// routeAddrs is the addresses of the brokers of topic, by name and id ("" when
// no route).
func routeAddrs(t *testing.T, c *remoting.Client, topic string) map[string]string {
	t.Helper()
	rd, err := getRoute(t, c, topic)
	if errors.Is(err, remoting.ErrTopicNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, bd := range rd.BrokerDatas {
		for id, a := range bd.BrokerAddrs {
			out[fmt.Sprintf("%s/%d", bd.BrokerName, id)] = a
		}
	}
	return out
}

func TestClusterSecretRequired(t *testing.T) {
	k := clusterKey(t, "the cluster's shared secret")
	s, addr := startServer(t, Options{ClusterKey: k})
	real := Broker{Cluster: "DefaultCluster", Name: "broker-a", ID: 0, Addr: "127.0.0.1:10911"}
	broker := dial(t, addr)
	accepted(t, "a signed registration", invoke(t, broker, signed(t, k, registerReq(t, real, "devices"))))

	attacker := dial(t, addr)
	client := dial(t, addr)
	before := routeAddrs(t, client, "devices")
	if before["broker-a/0"] != real.Addr {
		t.Fatalf("route %v", before)
	}
	fake := Broker{Cluster: "DefaultCluster", Name: "evil", ID: 0, Addr: "127.0.0.1:6666"}
	refused(t, "an unsigned registration", invoke(t, attacker, registerReq(t, fake, "devices")), "not signed", "cluster-secret")
	refused(t, "an unsigned unregistration", invoke(t, attacker, unregisterReq(real)), "not signed")
	refused(t, "an unsigned empty re-registration", invoke(t, attacker, registerReq(t, real)), "not signed")
	wrong := clusterKey(t, "another cluster's secret")
	refused(t, "a registration signed with another secret", invoke(t, attacker, signed(t, wrong, registerReq(t, fake, "devices"))),
		"bad signature", "differs from the NameServer's")
	refused(t, "an unregistration signed with another secret", invoke(t, attacker, signed(t, wrong, unregisterReq(real))), "bad signature")

	// A signed request seen before is refused, from any connection.
	req := signed(t, k, registerReq(t, real, "devices"))
	accepted(t, "a signed heartbeat", invoke(t, broker, cloneCmd(req)))
	refused(t, "the same request replayed", invoke(t, attacker, cloneCmd(req)), "replayed")
	refused(t, "the same request replayed on its own connection", invoke(t, broker, cloneCmd(req)), "replayed")

	stale := registerReq(t, fake, "devices")
	if err := k.Sign(stale, time.Now().Add(-10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	refused(t, "a request signed ten minutes ago", invoke(t, attacker, stale), "±5m0s")

	if after := routeAddrs(t, client, "devices"); len(after) != 1 || after["broker-a/0"] != real.Addr {
		t.Fatalf("the route changed: %v, was %v", after, before)
	}
	st := s.Stats()
	for reason, want := range map[string]int64{"unsigned": 3, "bad_signature": 2, "replay": 2, "stale": 1, "not_loopback": 0} {
		if st.Refused[reason] != want {
			t.Errorf("refused %s: %d, want %d (%v)", reason, st.Refused[reason], want, st.Refused)
		}
	}
}

func TestNameConflict(t *testing.T) {
	k := clusterKey(t, "the cluster's shared secret")
	_, addr := startServer(t, Options{ClusterKey: k})
	a := Broker{Cluster: "DefaultCluster", Name: "broker-a", ID: 0, Addr: "127.0.0.1:10911"}
	b := Broker{Cluster: "DefaultCluster", Name: "broker-a", ID: 0, Addr: "127.0.0.1:10912"} // configured alike
	ca, cb := dial(t, addr), dial(t, addr)
	accepted(t, "the first broker", invoke(t, ca, signed(t, k, registerReq(t, a, "devices"))))
	refused(t, "a second broker of the same name", invoke(t, cb, signed(t, k, registerReq(t, b, "devices"))),
		a.Addr, b.Addr, "--broker-name")
	if got := routeAddrs(t, cb, "devices"); len(got) != 1 || got["broker-a/0"] != a.Addr {
		t.Fatalf("route %v", got)
	}
	// Named apart, both serve the topic.
	b.Name = "broker-b"
	accepted(t, "the second broker named apart", invoke(t, cb, signed(t, k, registerReq(t, b, "devices"))))
	if got := routeAddrs(t, cb, "devices"); len(got) != 2 {
		t.Fatalf("route %v", got)
	}
	// Once the first broker is gone, its name is free.
	ca.Close()
	c := Broker{Cluster: "DefaultCluster", Name: "broker-a", ID: 0, Addr: "127.0.0.1:10913"}
	cc := dial(t, addr)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp := invoke(t, cc, signed(t, k, registerReq(t, c, "devices")))
		if resp.Code == remoting.Success {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the name of a closed broker's connection stays taken: %s", resp.Remark)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUnregisterOnlyByOwner(t *testing.T) {
	k := clusterKey(t, "the cluster's shared secret")
	for _, mode := range []struct {
		name string
		key  *clusterauth.Key
	}{{"with a secret", k}, {"loopback without a secret", nil}} {
		t.Run(mode.name, func(t *testing.T) {
			_, addr := startServer(t, Options{ClusterKey: mode.key})
			sign := func(req *remoting.Command) *remoting.Command {
				if mode.key != nil {
					return signed(t, mode.key, req)
				}
				return req
			}
			a := Broker{Cluster: "DefaultCluster", Name: "broker-a", ID: 0, Addr: "127.0.0.1:10911"}
			owner, other := dial(t, addr), dial(t, addr)
			accepted(t, "registration", invoke(t, owner, sign(registerReq(t, a, "devices", "orders"))))

			// Another broker of the cluster (another name) cannot drop it.
			b := a
			b.Name = "broker-b"
			refused(t, "unregistration from another connection", invoke(t, other, sign(unregisterReq(b))), "another connection")
			refused(t, "re-registration as another broker at its address", invoke(t, other, sign(registerReq(t, b, "x"))), "another connection")
			if mode.key == nil {
				refused(t, "unsigned unregistration of its name from another connection", invoke(t, other, unregisterReq(a)), "another connection")
				refused(t, "unsigned empty re-registration from another connection", invoke(t, other, registerReq(t, a)), "would drop")
				refused(t, "unsigned re-registration dropping a topic", invoke(t, other, registerReq(t, a, "devices")), `"orders"`)
			}
			if got := routeAddrs(t, other, "orders"); got["broker-a/0"] != a.Addr {
				t.Fatalf("route %v", got)
			}
			if mode.key != nil {
				// A proven broker of the same name and address (the broker
				// reconnected) may.
				accepted(t, "signed re-registration of the same broker", invoke(t, other, sign(registerReq(t, a, "devices", "orders"))))
				accepted(t, "signed unregistration of the same broker", invoke(t, other, sign(unregisterReq(a))))
			} else {
				accepted(t, "unregistration by its own connection", invoke(t, owner, unregisterReq(a)))
			}
			if got := routeAddrs(t, other, "orders"); got != nil {
				t.Fatalf("route after unregistration: %v", got)
			}
		})
	}
}

func TestAdmitRegistry(t *testing.T) {
	r := newRegistry()
	now := time.Unix(1000, 0)
	a := Broker{Cluster: "c", Name: "broker-a", ID: 0, Addr: "10.0.0.1:10911"}
	r.register(a, []remoting.TopicConfig{{TopicName: "t"}}, "conn1", now)
	moved := Broker{Cluster: "c", Name: "broker-a", ID: 0, Addr: "10.0.0.2:10911"}
	if ref := r.admitRegister(moved, nil, "conn2", true, now.Add(-time.Minute)); ref == nil || ref.reason != refuseConflict {
		t.Fatalf("a live broker's name: %+v", ref)
	}
	// A silent one's name is free, and taking it drops the silent entry.
	if ref := r.admitRegister(moved, nil, "conn2", true, now.Add(time.Minute)); ref != nil {
		t.Fatalf("a silent broker's name: %+v", ref)
	}
	// The same connection moving its broker is no conflict either.
	if ref := r.admitRegister(moved, nil, "conn1", false, now.Add(-time.Minute)); ref != nil {
		t.Fatalf("a move on the same connection: %+v", ref)
	}
	r.register(moved, nil, "conn2", now)
	if len(r.brokers) != 1 || r.brokers[moved.Addr] == nil {
		t.Fatalf("brokers %v", r.brokers)
	}
	if ref := r.admitUnregister(Broker{Addr: "10.9.9.9:1"}, "conn3", false); ref != nil {
		t.Fatalf("unregistering nothing: %+v", ref)
	}
}

// A master of a later epoch takes its group's name and id from a live
// master of an earlier one, which a partition may keep from noticing; the
// earlier one cannot take them back.
func TestLaterEpochTakesTheName(t *testing.T) {
	r := newRegistry()
	now := time.Unix(1000, 0)
	live := now.Add(-time.Minute)
	old := Broker{Cluster: "c", Name: "group-a", ID: 0, Addr: "10.0.0.1:10911", Epoch: 1}
	r.register(old, []remoting.TopicConfig{{TopicName: "t"}}, "conn1", now)
	same := Broker{Cluster: "c", Name: "group-a", ID: 0, Addr: "10.0.0.2:10911", Epoch: 1}
	if ref := r.admitRegister(same, nil, "conn2", true, live); ref == nil || ref.reason != refuseConflict {
		t.Fatalf("the same epoch: %+v", ref)
	}
	next := Broker{Cluster: "c", Name: "group-a", ID: 0, Addr: "10.0.0.2:10911", Epoch: 2}
	if ref := r.admitRegister(next, nil, "conn2", true, live); ref != nil {
		t.Fatalf("a later epoch: %+v", ref)
	}
	r.register(next, []remoting.TopicConfig{{TopicName: "t"}}, "conn2", now)
	if ref := r.admitRegister(old, nil, "conn1", true, live); ref == nil || ref.reason != refuseConflict {
		t.Fatalf("the deposed master again: %+v", ref)
	}
	rd, ok := r.route("t")
	if !ok || rd.BrokerDatas[0].BrokerAddrs[0] != next.Addr {
		t.Fatalf("route %+v", rd)
	}
	// The master re-registering on a new connection with its epoch is itself.
	if ref := r.admitRegister(next, nil, "conn3", true, live); ref != nil {
		t.Fatalf("the master reconnected: %+v", ref)
	}
}

func cloneCmd(c *remoting.Command) *remoting.Command {
	cp := *c
	cp.Fields = slices.Clone(c.Fields)
	return &cp
}

// A flood of refused requests is counted in full and logged once per
// reason every refusalLogEvery.
func TestRefusalLogRateLimited(t *testing.T) {
	log := &strings.Builder{}
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return log.Write(p)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{ClusterKey: clusterKey(t, "the cluster's shared secret"), Logger: slog.New(slog.NewTextHandler(w, nil))})
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	c := dial(t, ln.Addr().String())
	began := time.Now()
	const flood = 200
	for range flood {
		refused(t, "unsigned", invoke(t, c, registerReq(t, Broker{Cluster: "c", Name: "evil", ID: 0, Addr: "127.0.0.1:6666"}, "devices")))
	}
	elapsed := time.Since(began)
	if n := s.Stats().Refused["unsigned"]; n != flood {
		t.Fatalf("%d refusals counted, want %d", n, flood)
	}
	mu.Lock()
	lines := strings.Count(log.String(), `msg="namesrv: refused register broker" reason=unsigned`)
	mu.Unlock()
	if most := 1 + int(elapsed/refusalLogEvery); lines < 1 || lines > most {
		t.Fatalf("%d refusal lines for %d refusals in %v, want 1 to %d:\n%s", lines, flood, elapsed, most, log.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
