package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// amqpAddrRE finds the AMQP listener's bound address in ferry's log.
var amqpAddrRE = regexp.MustCompile(`msg="amqp: listening" .*addr=(\S+) tls=false`)

// startAMQPFerry runs ferry serve on data with the AMQP listener on a free
// port and returns the process and its AMQP URL.
func startAMQPFerry(t *testing.T, bin, data, flush string) (*ferryProc, string) {
	t.Helper()
	p := startFerry(t, bin, "serve", "--data-dir", data, "--flush", flush, "--namesrv-addr", "off", "--native-addr", "off",
		"--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off", "--amqp-addr", "127.0.0.1:0")
	if !p.waitLog(`msg="ferry ready"`, time.Minute) {
		t.Fatalf("ferry did not start:\n%s", p.log())
	}
	m := amqpAddrRE.FindStringSubmatch(p.log())
	if m == nil {
		t.Fatalf("no AMQP listening address in the log:\n%s", p.log())
	}
	return p, "amqp://guest:guest@" + m[1] + "/"
}

// Durability over AMQP, tested by crashing: amqp091-go publishers in
// confirm mode load a durable queue bound to a durable topic exchange;
// Ferry is killed (kill -9) mid-load; it restarts on the same data; the
// exchange, queue and binding are back and every confirmed message is
// consumed from the queue. In sync flush a confirm means on disk; in the
// default async flush it means in the OS, which a process crash does not
// lose.
func TestAMQPConfirmedSurvivesKill9(t *testing.T) {
	bin := buildFerry(t)
	for _, flush := range []string{"sync", "async"} {
		t.Run(flush, func(t *testing.T) { amqpConfirmedSurvivesKill9(t, bin, flush) })
	}
}

func amqpConfirmedSurvivesKill9(t *testing.T, bin, flush string) {
	data := filepath.Join(t.TempDir(), "data")
	p, url := startAMQPFerry(t, bin, data, flush)

	setup, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := setup.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("crash.orders", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("crash.audit", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("crash.audit", "orders.#", "crash.orders", false, nil); err != nil {
		t.Fatal(err)
	}
	setup.Close()

	const publishers = 4
	var mu sync.Mutex
	confirmed := map[string]bool{}
	var wg sync.WaitGroup
	for w := range publishers {
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Fatal(err)
		}
		pch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := pch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			// A window of publishes in flight, each body remembered until
			// its confirm arrives.
			const window = 64
			inflight := make(chan *amqp.DeferredConfirmation, window)
			bodies := map[uint64]string{}
			var bmu sync.Mutex
			done := make(chan struct{})
			go func() {
				defer close(done)
				for dc := range inflight {
					ok, err := dc.WaitContext(context.Background())
					if err != nil || !ok {
						return
					}
					bmu.Lock()
					body := bodies[dc.DeliveryTag]
					delete(bodies, dc.DeliveryTag)
					bmu.Unlock()
					mu.Lock()
					confirmed[body] = true
					mu.Unlock()
				}
			}()
			defer func() { close(inflight); <-done }()
			for i := 0; ; i++ {
				body := fmt.Sprintf("%d-%d", w, i)
				dc, err := pch.PublishWithDeferredConfirm("crash.orders", "orders."+strconv.Itoa(w), false, false,
					amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)})
				if err != nil {
					return
				}
				bmu.Lock()
				bodies[dc.DeliveryTag] = body
				bmu.Unlock()
				select {
				case inflight <- dc:
				case <-done:
					return
				}
			}
		}()
	}
	for {
		mu.Lock()
		n := len(confirmed)
		mu.Unlock()
		if n >= 5000 {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("ferry exited under load:\n%s", p.log())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
	wg.Wait()
	mu.Lock()
	want := len(confirmed)
	mu.Unlock()

	_, url = startAMQPFerry(t, bin, data, flush)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err = conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	// Passive declares: the durable exchange and queue are back.
	if err := ch.ExchangeDeclarePassive("crash.orders", "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("durable exchange lost: %v", err)
	}
	if _, err := ch.QueueDeclarePassive("crash.audit", true, false, false, false, nil); err != nil {
		t.Fatalf("durable queue lost: %v", err)
	}
	if err := ch.Qos(1000, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume("crash.audit", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	missing := func() []string {
		var lost []string
		for b := range confirmed {
			if !got[b] {
				lost = append(lost, b)
			}
		}
		return lost
	}
	deadline := time.After(60 * time.Second)
	for len(missing()) > 0 {
		select {
		case d, ok := <-ds:
			if !ok {
				t.Fatal(errors.New("the consumer's channel closed"))
			}
			got[string(d.Body)] = true
			d.Ack(false)
		case <-deadline:
			lost := missing()
			t.Fatalf("flush %s: %d of %d confirmed messages lost after kill -9 (e.g. %v)", flush, len(lost), want, lost[:min(10, len(lost))])
		}
	}
	// The binding is back too: a new publish is routed to the queue.
	if err := ch.Publish("crash.orders", "orders.after", false, false, amqp.Publishing{Body: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case d := <-ds:
			d.Ack(false)
			if string(d.Body) != "after" {
				continue
			}
			t.Logf("flush %s: %d confirmed before kill -9, all consumed after the restart (%d in all)", flush, want, len(got))
			return
		case <-time.After(10 * time.Second):
			t.Fatalf("flush %s: the durable binding did not route a publish after the restart", flush)
		}
	}
}
