package native

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

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/coretest"
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

// startRegistering serves a broker that registers with ns every 20 ms.
func startRegistering(t *testing.T, ns string, opts Options) (*Server, *logBuf) {
	t.Helper()
	log := &logBuf{}
	opts.Logger = slog.New(slog.NewTextHandler(log, nil))
	opts.NameServers = []string{ns}
	opts.RegisterInterval = 20 * time.Millisecond
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := coretest.New(t, core.Config{AutoCreateTopics: true, Logger: quiet})
	if _, err := b.CreateTopic("devices", 4); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(b, opts)
	go s.Serve(ln)
	t.Cleanup(func() {
		s.Close()
		b.Close()
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
	resp, err := c.Invoke(ctx, remoting.NewRequest(remoting.GetRouteInfoByTopic, map[string]string{"topic": topic}, nil))
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

	a, _ := startRegistering(t, nsAddr, Options{ClusterKey: k})
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
		_, log := startRegistering(t, nsAddr, Options{BrokerName: tc.name, ClusterKey: tc.key})
		eventually(t, tc.name+" refused again and again", func() bool { return ns.Stats().Refused[tc.reason] >= 3 })
		eventually(t, tc.name+" logs the refusal", func() bool {
			return strings.Contains(log.String(), "level=ERROR msg=\"native: the NameServer refused this broker's registration")
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
	a, _ := startRegistering(t, nsAddr, Options{ClusterKey: k})
	eventually(t, "the first broker's route", func() bool { return brokersOf(t, nsAddr, "devices")["broker-a"] == a.Addr() })
	b, log := startRegistering(t, nsAddr, Options{ClusterKey: k}) // broker-a too: the default
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
	a, _ := startRegistering(t, nsAddr, Options{})
	eventually(t, "the unsigned broker's route", func() bool { return brokersOf(t, nsAddr, "devices")["broker-a"] == a.Addr() })
}
