package rabbitmq

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/coretest"
	"github.com/ferrymq/ferry/internal/rabbittest"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// ferry is a store and a core over a data directory, which can be closed
// and opened again (a restart).
type ferry struct {
	t      testing.TB
	dir    string
	shut   func() error // closes the core and its store
	broker *core.Broker
}

func openFerry(t testing.TB, dir string) *ferry {
	return openFerryWith(t, dir, 50*time.Millisecond)
}

// openFerryWith opens a ferry that saves consumer offsets every
// offsetsEvery (0: the core's default, as in production).
func openFerryWith(t testing.TB, dir string, offsetsEvery time.Duration) *ferry {
	t.Helper()
	logger := testLogger(t)
	b, shut, err := coretest.Open(dir, coretest.Options{Core: core.Config{AutoCreateTopics: true, FlushInterval: offsetsEvery, Logger: logger}})
	if err != nil {
		t.Fatal(err)
	}
	f := &ferry{t: t, dir: dir, shut: shut, broker: b}
	t.Cleanup(f.close)
	return f
}

func (f *ferry) close() {
	if f.broker == nil {
		return
	}
	if err := f.shut(); err != nil {
		f.t.Error(err)
	}
	f.broker, f.shut = nil, nil
}

// publish stores a message in the core, its queue chosen by its subject.
func (f *ferry) publish(t testing.TB, topic, subject, body string, props map[string]string) {
	t.Helper()
	m := &core.Message{Topic: topic, Subject: subject, Body: []byte(body), Properties: core.PropertiesOf(props)}
	if _, err := f.broker.Publish(context.Background(), m, core.PublishOptions{Queue: core.QueueAuto, ShardKey: subject}); err != nil {
		t.Fatal(err)
	}
}

// bridgeConfig is a bridge with short back-offs and timeouts, for tests.
func bridgeConfig(name string, dir Direction, rabbitURL, topic string) Config {
	return Config{Name: name, Direction: dir, URL: rabbitURL, Topic: topic, Start: "first",
		BackoffMin: 20 * time.Millisecond, BackoffMax: 300 * time.Millisecond,
		Heartbeat: 2 * time.Second, Timeout: 5 * time.Second, ConfirmTimeout: 5 * time.Second, LagInterval: 50 * time.Millisecond}
}

func startBridge(t testing.TB, f *ferry, cfg Config) *Bridge {
	t.Helper()
	b, err := New(f.broker, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	t.Cleanup(func() { b.Close() })
	return b
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rabbit does the test's own work on RabbitMQ, each time on a fresh
// connection: a test may close every connection on purpose.
type rabbit struct {
	t   testing.TB
	url string
}

func newRabbit(t testing.TB) *rabbit { return &rabbit{t: t, url: rabbittest.URL(t)} }

// do runs f on a fresh channel.
func (r *rabbit) do(f func(ch *amqp.Channel) error) error {
	conn, err := amqp.DialConfig(r.url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return f(ch)
}

func (r *rabbit) must(f func(ch *amqp.Channel) error) {
	r.t.Helper()
	if err := r.do(f); err != nil {
		r.t.Fatal(err)
	}
}

// name is unique to the test and the run.
func (r *rabbit) name(kind string) string {
	var b [4]byte
	rand.Read(b[:])
	n := strings.NewReplacer("/", "-", " ", "-").Replace(r.t.Name())
	return "ferry-test-" + kind + "-" + n + "-" + hex.EncodeToString(b[:])
}

// exchange declares a topic exchange, deleted after the test.
func (r *rabbit) exchange() string {
	name := r.name("x")
	r.must(func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(name, "topic", false, false, false, false, nil)
	})
	r.t.Cleanup(func() {
		_ = r.do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(name, false, false) })
	})
	return name
}

// queue declares a durable queue bound to exchange with keys, deleted
// after the test.
func (r *rabbit) queue(args amqp.Table, exchange string, keys ...string) string {
	name := r.name("q")
	r.must(func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
			return err
		}
		for _, k := range keys {
			if err := ch.QueueBind(name, k, exchange, false, nil); err != nil {
				return err
			}
		}
		return nil
	})
	r.t.Cleanup(func() { r.deleteQueue(name) })
	return name
}

func (r *rabbit) deleteQueue(name string) {
	_ = r.do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(name, false, false, false); return err })
}

// drain takes what queue holds until it has at least want messages and
// nothing more came for a moment, or timeout.
func (r *rabbit) drain(queue string, want int, timeout time.Duration) []amqp.Delivery {
	r.t.Helper()
	var got []amqp.Delivery
	r.must(func(ch *amqp.Channel) error {
		if err := ch.Qos(1000, 0, false); err != nil {
			return err
		}
		ds, err := ch.Consume(queue, "", true, false, false, false, nil)
		if err != nil {
			return err
		}
		deadline := time.After(timeout)
		for {
			quiet := time.NewTimer(300 * time.Millisecond)
			select {
			case d, ok := <-ds:
				quiet.Stop()
				if !ok {
					return errors.New("consumer closed")
				}
				got = append(got, d)
			case <-quiet.C:
				if len(got) >= want {
					return nil
				}
			case <-deadline:
				quiet.Stop()
				return nil
			}
		}
	})
	return got
}

// publishAll publishes bodies with routing keys to exchange, with confirms.
func (r *rabbit) publishAll(exchange string, keys, bodies []string, headers amqp.Table) {
	r.t.Helper()
	r.must(func(ch *amqp.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return err
		}
		var dcs []*amqp.DeferredConfirmation
		for i := range bodies {
			dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, keys[i], false, false,
				amqp.Publishing{Headers: headers, DeliveryMode: amqp.Persistent, Body: []byte(bodies[i]), MessageId: "m-" + strconv.Itoa(i)})
			if err != nil {
				return err
			}
			dcs = append(dcs, dc)
			if len(dcs) == 512 {
				for _, dc := range dcs {
					if !dc.Wait() {
						return errors.New("nacked")
					}
				}
				dcs = dcs[:0]
			}
		}
		for _, dc := range dcs {
			if !dc.Wait() {
				return errors.New("nacked")
			}
		}
		return nil
	})
}

// CloseFromRabbitMQ has RabbitMQ itself close the connections through the
// proxy (rabbitmqctl close_connection, found by their ports), so that the
// client gets a connection.close from the server; the other tests' and
// packages' connections to the same RabbitMQ are left alone. It reports
// whether it closed any (false when rabbitmqctl is not there or allowed).
func (p *proxy) CloseFromRabbitMQ(t testing.TB) bool {
	ports := map[string]bool{}
	p.mu.Lock()
	for c, upstream := range p.conns {
		if upstream {
			ports[strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port)] = true
		}
	}
	p.mu.Unlock()
	list, err := runCtl("list_connections", "pid", "peer_port", "-q", "--no-table-headers")
	if err != nil {
		t.Log(err)
		return false
	}
	closed := 0
	for line := range strings.Lines(list) {
		pid, port, _ := strings.Cut(strings.TrimSpace(line), "\t")
		if !ports[port] {
			continue
		}
		if _, err := runCtl("close_connection", pid, "ferry fault test"); err != nil {
			t.Log(err)
			continue
		}
		closed++
	}
	return closed > 0
}

// runCtl runs rabbitmqctl with args, for at most 30 s; an error wraps
// exec.ErrNotFound when it is not on PATH, and holds its output.
func runCtl(args ...string) (string, error) {
	path, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("rabbitmqctl %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

// proxy forwards TCP connections to a target and cuts them all on demand.
type proxy struct {
	ln       net.Listener
	target   string
	refusing atomic.Bool // close new connections at once: RabbitMQ "away"
	mu       sync.Mutex
	conns    map[net.Conn]bool // true: the connection to the target
	wg       sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// url is rabbitURL with its host and port replaced by the proxy's.
func (p *proxy) url(t testing.TB, rabbitURL string) string {
	u, err := url.Parse(rabbitURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refusing.Load() {
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = false, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// Cut closes every connection through the proxy, mid-stream.
func (p *proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		c.Close()
	}
	return n
}

// rabbitAddr is the host:port of a RabbitMQ URL.
func rabbitAddr(t testing.TB, rabbitURL string) string {
	u, err := amqp.ParseURI(rabbitURL)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
}
