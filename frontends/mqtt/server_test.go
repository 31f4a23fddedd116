package mqtt

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/coretest"
)

// ferry is one Ferry (store, core and MQTT front-end) on a data directory,
// serving MQTT on 127.0.0.1 with a port of its own.
type ferry struct {
	t     testing.TB
	dir   string
	cfg   Config
	sync  bool         // sync flush
	close func() error // the core and its store
	core  *core.Broker
	mqtt  *Server
	addr  string
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startFerry(t testing.TB, dir string, cfg Config) *ferry {
	t.Helper()
	f := &ferry{t: t, dir: dir, cfg: cfg}
	f.start("127.0.0.1:0")
	t.Cleanup(f.stop)
	return f
}

func (f *ferry) start(addr string) {
	t := f.t
	t.Helper()
	log := testLogger(t)
	b, closeCore, err := coretest.Open(f.dir, coretest.Options{SyncFlush: f.sync,
		Core: core.Config{AutoCreateTopics: true, FlushInterval: 50 * time.Millisecond, Logger: log}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	cfg.Addr, cfg.Logger = addr, log
	s, err := New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	f.close, f.core, f.mqtt, f.addr = closeCore, b, s, s.Addr("tcp")
}

func (f *ferry) stop() {
	if f.mqtt == nil {
		return
	}
	if err := f.mqtt.Close(); err != nil {
		f.t.Logf("mqtt close: %v", err)
	}
	f.close()
	f.mqtt = nil
}

// restart stops Ferry and starts it again on the same data directory and port.
func (f *ferry) restart() {
	addr := f.addr
	f.stop()
	f.start(addr)
}

type clientOpt func(*paho.ClientOptions)

func (f *ferry) connect(id string, opts ...clientOpt) paho.Client {
	f.t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + f.addr).SetClientID(id).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetOrderMatters(true)
	for _, fn := range opts {
		fn(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		f.t.Fatalf("connect %s: %v", id, tok.Error())
	}
	f.t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func wait(t testing.TB, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// inbox collects the messages a subscriber receives.
type inbox struct {
	mu   sync.Mutex
	msgs []paho.Message
	ch   chan struct{}
}

func newInbox() *inbox { return &inbox{ch: make(chan struct{}, 1)} }

func (in *inbox) handler(_ paho.Client, m paho.Message) {
	in.mu.Lock()
	in.msgs = append(in.msgs, m)
	in.mu.Unlock()
	select {
	case in.ch <- struct{}{}:
	default:
	}
}

func (in *inbox) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.msgs)
}

func (in *inbox) all() []paho.Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]paho.Message(nil), in.msgs...)
}

// waitN waits until the inbox holds n messages, and fails if it holds more
// a little later.
func (in *inbox) waitN(t testing.TB, n int) []paho.Message {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for in.len() < n {
		select {
		case <-in.ch:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("got %d messages, want %d", in.len(), n)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if got := in.len(); got != n {
		t.Fatalf("got %d messages, want exactly %d", got, n)
	}
	return in.all()
}

func TestQoSLevelsAreTheMinimumOfPublishAndSubscription(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	sub := f.connect("sub")
	in := newInbox()
	wait(t, sub.Subscribe("sensors/#", 1, in.handler), "subscribe")
	pub := f.connect("pub")
	for q := byte(0); q <= 2; q++ {
		wait(t, pub.Publish(fmt.Sprintf("sensors/%d/temp", q), q, false, fmt.Sprint("qos", q)), "publish")
	}
	got := in.waitN(t, 3)
	qos := map[string]byte{}
	for _, m := range got {
		qos[m.Topic()] = m.Qos()
	}
	want := map[string]byte{"sensors/0/temp": 0, "sensors/1/temp": 1, "sensors/2/temp": 1}
	for topic, q := range want {
		if qos[topic] != q {
			t.Errorf("%s arrived with QoS %d, want %d (all: %v)", topic, qos[topic], q, qos)
		}
	}
}

func TestWildcardsAndExactlyOnce(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	filters := map[string][]string{ // filter → topics it gets, of those published below
		"devices/+/telemetry": {"devices/1/telemetry", "devices/2/telemetry"},
		"devices/#":           {"devices", "devices/1/telemetry", "devices/2/telemetry", "devices/1/cmd"},
		"+":                   {"devices", "alerts"},
		"+/1/#":               {"devices/1/telemetry", "devices/1/cmd"},
		"alerts":              {"alerts"},
	}
	inboxes := map[string]*inbox{}
	for filter := range filters {
		in := newInbox()
		c := f.connect("sub-" + strings.NewReplacer("/", "_", "+", "p", "#", "h").Replace(filter))
		wait(t, c.Subscribe(filter, 1, in.handler), "subscribe "+filter)
		inboxes[filter] = in
	}
	// One client with two overlapping filters gets each message once. (The
	// messages go to the default handler: paho would call a handler per
	// matching filter.)
	overlap := newInbox()
	oc := f.connect("overlap", func(o *paho.ClientOptions) { o.SetDefaultPublishHandler(overlap.handler) })
	wait(t, oc.SubscribeMultiple(map[string]byte{"devices/#": 1, "devices/+/telemetry": 1}, nil), "subscribe overlap")

	pub := f.connect("pub")
	for _, topic := range []string{"devices", "devices/1/telemetry", "devices/2/telemetry", "devices/1/cmd", "alerts", "other/x"} {
		wait(t, pub.Publish(topic, 1, false, topic), "publish "+topic)
	}
	for filter, want := range filters {
		got := inboxes[filter].waitN(t, len(want))
		seen := map[string]bool{}
		for _, m := range got {
			seen[m.Topic()] = true
			if string(m.Payload()) != m.Topic() {
				t.Errorf("%s: payload %q on topic %q", filter, m.Payload(), m.Topic())
			}
		}
		for _, topic := range want {
			if !seen[topic] {
				t.Errorf("filter %s did not get %s (got %v)", filter, topic, seen)
			}
		}
	}
	overlap.waitN(t, 4)
}

// a raw TCP connection that a test can cut, for will messages.
func cuttable(conns *[]net.Conn, mu *sync.Mutex) clientOpt {
	return func(o *paho.ClientOptions) {
		o.SetCustomOpenConnectionFn(func(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			c, err := net.Dial("tcp", uri.Host)
			if err == nil {
				mu.Lock()
				*conns = append(*conns, c)
				mu.Unlock()
			}
			return c, err
		})
	}
}

func TestMetrics(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(f.mqtt); err != nil {
		t.Fatal(err)
	}
	in := newInbox()
	sub := f.connect("sub")
	wait(t, sub.Subscribe("m/#", 1, in.handler), "subscribe")
	wait(t, f.connect("pub").Publish("m/x", 1, false, "hi"), "publish")
	in.waitN(t, 1)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	if got["ferry_mqtt_connections"] != 2 || got["ferry_mqtt_received_total"] != 1 || got["ferry_mqtt_delivered_total"] != 1 {
		t.Fatalf("metrics: %v", got)
	}
}
