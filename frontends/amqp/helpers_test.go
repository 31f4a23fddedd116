package amqp

import (
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/coretest"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// ferry is a core and the AMQP front-end over it, on a data directory that
// survives a restart.
type ferry struct {
	t     testing.TB
	dir   string
	cfg   Config
	sync  bool
	core  *core.Broker
	srv   *Server
	close func() error
	url   string
}

func startFerry(t testing.TB, cfg Config) *ferry {
	t.Helper()
	f := &ferry{t: t, dir: t.TempDir(), cfg: cfg}
	f.start()
	t.Cleanup(f.stop)
	return f
}

func (f *ferry) start() {
	t := f.t
	t.Helper()
	log := testLogger(t)
	b, closeCore, err := coretest.Open(f.dir, coretest.Options{SyncFlush: f.sync,
		Core: core.Config{AutoCreateTopics: true, FlushInterval: 50 * time.Millisecond, Logger: log}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.Logger = log
	s, err := New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	f.core, f.srv, f.close = b, s, closeCore
	f.url = "amqp://guest:guest@" + s.Addrs()[0].String() + "/"
}

func (f *ferry) stop() {
	if f.srv == nil {
		return
	}
	f.srv.Close()
	f.close()
	f.srv = nil
}

func (f *ferry) restart() {
	f.stop()
	f.start()
}

// dial connects an amqp091-go client.
func (f *ferry) dial(t testing.TB) *amqp091.Connection {
	t.Helper()
	c, err := amqp091.Dial(f.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func openChannel(t testing.TB, c *amqp091.Connection) *amqp091.Channel {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func recv(t testing.TB, ds <-chan amqp091.Delivery) amqp091.Delivery {
	t.Helper()
	select {
	case d, ok := <-ds:
		if !ok {
			t.Fatal("delivery channel closed")
		}
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery in 10s")
	}
	return amqp091.Delivery{}
}

func noDelivery(t testing.TB, ds <-chan amqp091.Delivery, wait time.Duration) {
	t.Helper()
	select {
	case d := <-ds:
		t.Fatalf("unexpected delivery %q", d.Body)
	case <-time.After(wait):
	}
}

// clientMissing skips t, a test of client, for want of what msg names;
// under CI=true, where every client test must run, it fails t instead.
func clientMissing(t testing.TB, client, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; skipping the " + client + " client test")
}
