package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/frontends/native"
	"github.com/ferrymq/ferry/frontends/native/nativetest"
	"github.com/ferrymq/ferry/namesrv"
	"github.com/ferrymq/ferry/remoting"
	"github.com/ferrymq/ferry/storage"
)

// testLogger discards, unless CLIENT_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("CLIENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testFerry is a NameServer and brokers running in this process on ports
// the system chose.
type testFerry struct {
	ns      string
	brokers map[string]*testBroker
	auth    *auth.Authenticator // checks the brokers' requests when set
	tls     *tls.Config         // the brokers serve TLS with it when set
	// advertise, when set, is the address the brokers register instead of
	// their own: a party posing as them.
	advertise string
	limits    remoting.Limits // of the NameServer and the brokers
	// txCheck, when set, is the brokers' first check of a half message and
	// the interval between checks.
	txCheck time.Duration
}

type testBroker struct {
	dir  string // its data
	core *core.Broker
	fe   *native.Server
	addr string
	stop func()
	once sync.Once
}

// Stop stops the broker's front-end, store and core (a crash, to clients).
func (b *testBroker) Stop() { b.once.Do(b.stop) }

// startFerry starts a NameServer and one broker, "broker-a". Delay levels
// are RocketMQ's scaled down 1000 times, so that retries come fast.
func startFerry(t *testing.T) *testFerry {
	t.Helper()
	return startFerryWith(t, &testFerry{})
}

// startFerryWith is startFerry with f's auth and tls for the brokers.
func startFerryWith(t *testing.T, f *testFerry) *testFerry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ns := namesrv.New(namesrv.Options{Limits: f.limits, Logger: testLogger()})
	go ns.Serve(ln)
	t.Cleanup(func() { ns.Close() })
	f.ns, f.brokers = ln.Addr().String(), map[string]*testBroker{}
	f.addBroker(t, "broker-a")
	return f
}

// addBroker starts another broker registering with the NameServer.
func (f *testFerry) addBroker(t *testing.T, name string) *testBroker {
	t.Helper()
	return f.startBroker(t, name, t.TempDir())
}

// restartBroker stops broker name and starts it again on the same data
// directory and a new port, as a restarted process would be.
func (f *testFerry) restartBroker(t *testing.T, name string) *testBroker {
	t.Helper()
	old := f.brokers[name]
	old.Stop()
	return f.startBroker(t, name, old.dir)
}

// startBroker starts broker name on the data in dir.
func (f *testFerry) startBroker(t *testing.T, name, dir string) *testBroker {
	t.Helper()
	logger := testLogger()
	st, err := storage.Open(dir, storage.Options{SegmentSize: 16 << 20, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	levels := make([]time.Duration, len(core.DefaultDelayLevels))
	for i, d := range core.DefaultDelayLevels {
		levels[i] = d / 1000
	}
	b, err := core.New(st, core.Config{AutoCreateTopics: true, DelayLevels: levels, Logger: logger,
		TransactionCheckDelay: f.txCheck, TransactionCheckInterval: f.txCheck})
	if err != nil {
		t.Fatal(err)
	}
	br := nativetest.StartBroker(t, b, name, []string{f.ns},
		native.Options{Auth: f.auth, Advertise: f.advertise, Limits: f.limits, Logger: logger}, f.tls)
	tb := &testBroker{dir: dir, core: b, fe: br.Server, addr: br.Addr}
	tb.stop = func() {
		br.Stop()
		b.Close()
		st.Close()
	}
	t.Cleanup(tb.Stop)
	f.brokers[name] = tb
	return tb
}

// createTopic creates topic on every broker and waits for the NameServer
// to route it to all of them.
func (f *testFerry) createTopic(t *testing.T, topic string, queues int) {
	t.Helper()
	for _, b := range f.brokers {
		if _, err := b.core.CreateTopic(topic, queues); err != nil {
			t.Fatal(err)
		}
	}
	f.waitForRoute(t, topic, len(f.brokers))
}

// waitForRoute waits until the NameServer routes topic to n brokers.
func (f *testFerry) waitForRoute(t *testing.T, topic string, n int) {
	t.Helper()
	f.waitForRouteData(t, topic, func(rd remoting.RouteData) bool { return len(rd.BrokerDatas) == n }, "route of %s to %d brokers", topic, n)
}

// waitForRouteData waits until the NameServer's route of topic satisfies ok.
func (f *testFerry) waitForRouteData(t *testing.T, topic string, ok func(remoting.RouteData) bool, format string, args ...any) {
	t.Helper()
	c, err := remoting.Dial(context.Background(), f.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := c.Invoke(ctx, remoting.NewRequest(remoting.GetRouteInfoByTopic, remoting.Pairs("topic", topic), nil))
		if err != nil || remoting.ResponseError(resp) != nil {
			return false
		}
		var rd remoting.RouteData
		return json.Unmarshal(resp.Body, &rd) == nil && ok(rd)
	}, format, args...)
}

// opts are the options of a client of f, with short intervals.
func (f *testFerry) opts(extra ...Option) []Option {
	return append([]Option{WithNameServers(f.ns), WithLogger(testLogger()), withIntervals(intervals{
		routeRefresh: 300 * time.Millisecond, rebalance: 100 * time.Millisecond, heartbeat: 200 * time.Millisecond,
		commit: 100 * time.Millisecond, retryBackoff: 100 * time.Millisecond,
	})}, extra...)
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: "+format, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noClientGoroutines checks, polling, that no goroutine of this package's
// types is left.
func noClientGoroutines(t *testing.T) {
	t.Helper()
	var left string
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = ""
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "ferry/client.(*Producer)") || strings.Contains(g, "ferry/client.(*PushConsumer)") ||
				strings.Contains(g, "ferry/client.(*routes)") || strings.Contains(g, "ferry/client.(*pool)") {
				left = g
				break
			}
		}
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client goroutine is left after Close:\n%s", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ownedQueues counts the queues of topic c owns.
func (c *PushConsumer) ownedQueues(topic string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k := range c.queues {
		if k.topic == topic {
			n++
		}
	}
	return n
}

// recorder collects received messages.
type recorder struct {
	mu   sync.Mutex
	msgs []*MessageExt
}

func (r *recorder) handle(_ context.Context, m *MessageExt) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	return nil
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) snapshot() []*MessageExt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*MessageExt(nil), r.msgs...)
}

// bodies is the set of bodies received.
func (r *recorder) bodies() map[string]int {
	out := map[string]int{}
	for _, m := range r.snapshot() {
		out[string(m.Body)]++
	}
	return out
}

// startConsumer starts a consumer of group on topic, closed at cleanup.
func (f *testFerry) startConsumer(t *testing.T, group, topic, expr string, h func(context.Context, *MessageExt) error, opts ...Option) *PushConsumer {
	t.Helper()
	c, err := NewPushConsumer(group, f.opts(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(topic, expr, h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (f *testFerry) newProducer(t *testing.T, opts ...Option) *Producer {
	t.Helper()
	p, err := NewProducer(f.opts(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
