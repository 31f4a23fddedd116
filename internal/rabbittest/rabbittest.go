// Package rabbittest gives tests the real RabbitMQ they run against, and
// keeps tests of different packages (separate processes under go test)
// from upsetting each other on it.
//
// Most tests only add their own exchanges, queues and connections: they
// share the RabbitMQ. A test that changes it for every client (a memory
// alarm blocks all publishers) holds it alone. A lock file in the
// temporary directory, locked shared or exclusive with flock, does both.
package rabbittest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sys/unix"
)

// DefaultURL is the RabbitMQ that ./test.sh installs and starts.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

var (
	mu        sync.Mutex
	exclusive int // tests of this process holding the RabbitMQ alone
)

// URL is the RabbitMQ the tests use: FERRY_TEST_AMQP_URL, or DefaultURL.
// The test shares it with other packages' tests until it ends. When it does
// not answer the test is skipped, except under CI=true, where that is a
// failure: there the test set-up must have started it.
func URL(t testing.TB) string {
	t.Helper()
	mu.Lock()
	alone := exclusive > 0
	mu.Unlock()
	if !alone {
		lock(t, unix.LOCK_SH)
	}
	u := os.Getenv("FERRY_TEST_AMQP_URL")
	if u == "" {
		u = DefaultURL
	}
	conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		missing(t, "RabbitMQ does not answer at FERRY_TEST_AMQP_URL ("+err.Error()+"); "+
			"run ./test.sh, which installs and starts it, or set FERRY_TEST_AMQP_URL")
	}
	conn.Close()
	return u
}

// Exclusive holds the RabbitMQ for t alone until it ends: the tests of
// other packages wait for it in URL. Call it before URL, and only from a
// test that does not run in parallel with others of its package.
func Exclusive(t testing.TB) {
	t.Helper()
	lock(t, unix.LOCK_EX)
	mu.Lock()
	exclusive++
	mu.Unlock()
	t.Cleanup(func() {
		mu.Lock()
		exclusive--
		mu.Unlock()
	})
}

// lock takes the lock file in mode until t ends.
func lock(t testing.TB, mode int) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "ferry-test-rabbitmq.lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("rabbittest: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), mode); err != nil {
		f.Close()
		t.Fatalf("rabbittest: lock %s: %v", f.Name(), err)
	}
	t.Cleanup(func() { f.Close() }) // closing the file releases the lock
}

// Channel dials url and opens a channel; both close when t ends.
func Channel(t testing.TB, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return conn, ch
}

// missing skips t for want of RabbitMQ, saying why; under CI=true, where
// RabbitMQ must be there, it fails t instead.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
