package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/client"
)

// target is one running system under test, with two topics (or queues, or
// streams) made for the run: "bench" for throughput and "lat" for latency.
type target interface {
	// publisher opens its own connection to publish to topic.
	publisher(topic string) (publisher, error)
	// subscribe reads topic from its start, calling onMsg for each message
	// (possibly concurrently), until stop is called.
	subscribe(topic string, onMsg func(body []byte)) (stop func(), err error)
	// pid is the server's process id, 0 when unknown.
	pid() int
	close()
}

// publisher sends confirmed messages asynchronously: publish blocks while
// --window publishes are unconfirmed, and done is called once the system
// confirmed the message stored (or failed it). body must not change
// before done.
type publisher interface {
	publish(body []byte, done func(error))
	close()
}

// window bounds a publisher's unconfirmed publishes.
type window chan struct{}

func (w window) acquire() { w <- struct{}{} }
func (w window) release() { <-w }

// wait returns once every publish has been confirmed.
func (w window) wait() {
	for range cap(w) {
		w <- struct{}{}
	}
	for range cap(w) {
		<-w
	}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// freePort returns a loopback port free right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proc is a server process started by the harness, its output in a log file.
type proc struct {
	cmd  *exec.Cmd
	dir  string
	log  string
	done chan struct{}
}

// startProc runs bin with args, scanning each line of its output.
func startProc(dir, bin string, args []string, scan func(string)) (*proc, error) {
	return startProcEnv(dir, bin, args, nil, scan)
}

// startProcEnv is startProc with env added to the harness's environment.
func startProcEnv(dir, bin string, args, env []string, scan func(string)) (*proc, error) {
	p := &proc{dir: dir, log: filepath.Join(dir, "log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(f, sc.Text())
			if scan != nil {
				scan(sc.Text())
			}
		}
		io.Copy(f, pr)
		f.Close()
	}()
	go func() {
		p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process (SIGTERM, SIGKILL after 20 s) and removes its directory.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	os.RemoveAll(p.dir)
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// --- Ferry: `ferry serve` with the native protocol only ---

var nsRe = regexp.MustCompile(`msg="namesrv listening".* addr=(\S+)`)

type ferry struct {
	p  *proc
	ns []string // NameServer addresses
}

func startFerry(bin, flush string) (target, error) {
	p, ns, err := startServe(bin, flush, nsRe, "--amqp-addr", "off")
	if err != nil {
		return nil, err
	}
	f := &ferry{p: p, ns: []string{ns}}
	if err := createFerryTopics(f.ns, "bench", "lat"); err != nil {
		p.stop()
		return nil, err
	}
	return f, nil
}

// startServe runs `ferry serve` in a new temporary directory with flush,
// its NameServer and native listeners on free ports, MQTT and HTTP off,
// and listeners (flags) for the rest; it returns the process once ready,
// with the address addrRe finds in its log.
func startServe(bin, flush string, addrRe *regexp.Regexp, listeners ...string) (*proc, string, error) {
	dir, err := os.MkdirTemp("", "bench-peers-ferry")
	if err != nil {
		return nil, "", err
	}
	var addr string
	args := append([]string{"serve", "--flush", flush, "--namesrv-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0",
		"--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--mqtt-tls-addr", "off", "--http-addr", "off"}, listeners...)
	p, err := startReady(dir, bin, args, nil, func(line string) {
		if m := addrRe.FindStringSubmatch(line); m != nil {
			addr = strings.Trim(m[1], `"`)
		}
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("ferry: %w", err)
	}
	if addr == "" {
		p.stop()
		return nil, "", fmt.Errorf("ferry: no address matching %s in its log:\n%s", addrRe, p.tail())
	}
	return p, addr, nil
}

// createFerryTopics makes topics of 8 queues and waits for their routes.
func createFerryTopics(ns []string, topics ...string) error {
	a, err := client.NewAdmin(client.WithNameServers(ns...), client.WithLogger(discard))
	if err != nil {
		return fmt.Errorf("ferry: admin: %w", err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, t := range topics {
		// The broker registers with the NameServer just after it is ready.
		for err = a.CreateTopic(ctx, t, 8); err != nil && ctx.Err() == nil; err = a.CreateTopic(ctx, t, 8) {
			time.Sleep(50 * time.Millisecond)
		}
		if err == nil {
			err = a.WaitForRoute(ctx, t)
		}
		if err != nil {
			return fmt.Errorf("ferry: topic %s: %w", t, err)
		}
	}
	return nil
}

func (f *ferry) pid() int { return f.p.cmd.Process.Pid }
func (f *ferry) close()   { f.p.stop() }

type ferryPub struct {
	p     *client.Producer
	topic string
	w     window
}

func (f *ferry) publisher(topic string) (publisher, error) {
	p, err := client.NewProducer(client.WithNameServers(f.ns...), client.WithLogger(discard))
	if err != nil {
		return nil, err
	}
	fp := &ferryPub{p: p, topic: topic, w: make(window, *windowN)}
	// The first send opens the connection and looks the route up.
	if _, err := p.Send(context.Background(), &client.Message{Topic: topic, Body: []byte("warm-up")}); err != nil {
		p.Close()
		return nil, err
	}
	return fp, nil
}

func (fp *ferryPub) publish(body []byte, done func(error)) {
	fp.w.acquire()
	fp.p.SendAsync(context.Background(), &client.Message{Topic: fp.topic, Body: body}, func(_ client.SendResult, err error) {
		fp.w.release()
		done(err)
	})
}

func (fp *ferryPub) close() { fp.w.wait(); fp.p.Close() }

func (f *ferry) subscribe(topic string, onMsg func([]byte)) (func(), error) {
	c, err := client.NewPushConsumer(fmt.Sprintf("bench-%s-%d", topic, time.Now().UnixNano()),
		client.WithNameServers(f.ns...), client.WithLogger(discard), client.WithPullBatch(256))
	if err != nil {
		return nil, err
	}
	c.Subscribe(topic, "*", func(_ context.Context, m *client.MessageExt) error {
		onMsg(m.Body)
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return func() { c.Close() }, nil
}

// --- RabbitMQ: durable classic or quorum queues, publisher confirms ---

// rabbit is an AMQP 0-9-1 server under test: RabbitMQ, or Ferry's AMQP
// front-end (then server is Ferry's process).
type rabbit struct {
	url       string
	qtype     string
	queues    map[string]string // topic → queue name
	exchanges map[string]string // topic → exchange name; none: the default exchange
	conn      *amqp.Connection
	server    *proc
}

func startRabbit(url, qtype string) (target, error) {
	return startAMQP(url, qtype, *amqpFront, nil)
}

// startAMQP declares a durable queue of qtype per topic on the server at
// url. withExchange: each topic also gets a durable direct exchange the
// queue is bound to (key "k"), and publishes go there; otherwise they go
// to the default exchange, keyed by the queue's name.
func startAMQP(url, qtype string, withExchange bool, server *proc) (target, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, err
	}
	r := &rabbit{url: url, qtype: qtype, queues: map[string]string{}, exchanges: map[string]string{}, conn: conn, server: server}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer ch.Close()
	for _, t := range []string{"bench", "lat"} {
		q := fmt.Sprintf("bench-peers-%s-%s-%d", qtype, t, time.Now().UnixNano())
		if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": qtype}); err != nil {
			r.close()
			return nil, err
		}
		r.queues[t] = q
		if !withExchange {
			continue
		}
		x := q + "-x"
		if err := ch.ExchangeDeclare(x, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
			r.close()
			return nil, err
		}
		r.exchanges[t] = x
		if err := ch.QueueBind(q, "k", x, false, nil); err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

// route is where a publish to topic goes: exchange and routing key.
func (r *rabbit) route(topic string) (exchange, key string) {
	if x, ok := r.exchanges[topic]; ok {
		return x, "k"
	}
	return "", r.queues[topic]
}

// rabbitVersion returns the server's version, from the connection's properties.
func rabbitVersion(url string) string {
	conn, err := amqp.Dial(url)
	if err != nil {
		return ""
	}
	defer conn.Close()
	v, _ := conn.Properties["version"].(string)
	return v
}

func (r *rabbit) close() {
	if ch, err := r.conn.Channel(); err == nil {
		for _, q := range r.queues {
			ch.QueueDelete(q, false, false, false)
		}
		for _, x := range r.exchanges {
			ch.ExchangeDelete(x, false, false)
		}
		ch.Close()
	}
	r.conn.Close()
	if r.server != nil {
		r.server.stop()
	}
}

// pid is Ferry's process, or finds the Erlang VM's (RabbitMQ is not
// started by the harness).
func (r *rabbit) pid() int {
	if r.server != nil {
		return r.server.cmd.Process.Pid
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); strings.TrimSpace(string(b)) == "beam.smp" {
			if cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); strings.Contains(string(cmdline), "rabbit") {
				return pid
			}
		}
	}
	return 0
}

type rabbitPub struct {
	conn          *amqp.Connection
	ch            *amqp.Channel
	exchange, key string
	w             window
	mu            sync.Mutex
	dones         []func(error) // in publish order, as the confirms come
}

func (r *rabbit) publisher(topic string) (publisher, error) {
	conn, err := amqp.Dial(r.url)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &rabbitPub{conn: conn, ch: ch, w: make(window, *windowN)}
	p.exchange, p.key = r.route(topic)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, *windowN))
	go func() {
		for c := range confirms {
			p.mu.Lock()
			done := p.dones[0]
			p.dones = p.dones[1:]
			p.mu.Unlock()
			p.w.release()
			if c.Ack {
				done(nil)
			} else {
				done(errors.New("nacked"))
			}
		}
	}()
	return p, nil
}

func (p *rabbitPub) publish(body []byte, done func(error)) {
	p.w.acquire()
	p.mu.Lock()
	p.dones = append(p.dones, done)
	p.mu.Unlock()
	if err := p.ch.PublishWithContext(context.Background(), p.exchange, p.key, false, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}); err != nil {
		p.mu.Lock()
		p.dones = p.dones[:len(p.dones)-1]
		p.mu.Unlock()
		p.w.release()
		done(err)
	}
}

func (p *rabbitPub) close() { p.w.wait(); p.conn.Close() }

func (r *rabbit) subscribe(topic string, onMsg func([]byte)) (func(), error) {
	ch, err := r.conn.Channel()
	if err != nil {
		return nil, err
	}
	ch.Qos(1000, 0, false)
	deliveries, err := ch.Consume(r.queues[topic], "", false, false, false, false, nil)
	if err != nil {
		return nil, err
	}
	quit := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		n := 0
		for {
			select {
			case d, ok := <-deliveries:
				if !ok {
					return
				}
				onMsg(d.Body)
				if n++; n%100 == 0 { // one ack for 100 deliveries
					d.Ack(true)
				}
			case <-quit:
				return
			}
		}
	}()
	return func() { close(quit); <-ended; ch.Close() }, nil
}

// --- NATS JetStream: nats-server -js on a free port, file storage ---

type natsJS struct {
	p    *proc
	url  string
	conn *nats.Conn
	js   jetstream.JetStream
}

func startNATS(bin string) (target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bench-peers-nats")
	if err != nil {
		return nil, err
	}
	p, err := startProc(dir, bin, []string{"-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", filepath.Join(dir, "js")}, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	n := &natsJS{p: p, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	for i := 0; i < 200; i++ {
		if n.conn, err = nats.Connect(n.url); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	n.js, _ = jetstream.New(n.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, t := range []string{"bench", "lat"} {
		if _, err := n.js.CreateStream(ctx, jetstream.StreamConfig{Name: strings.ToUpper(t), Subjects: []string{t}, Storage: jetstream.FileStorage}); err != nil {
			n.close()
			return nil, err
		}
	}
	return n, nil
}

func (n *natsJS) pid() int { return n.p.cmd.Process.Pid }
func (n *natsJS) close()   { n.conn.Close(); n.p.stop() }

type natsPub struct {
	conn    *nats.Conn
	js      jetstream.JetStream
	subject string
	futures chan natsPending
	ended   chan struct{}
}

type natsPending struct {
	f    jetstream.PubAckFuture
	done func(error)
}

func (n *natsJS) publisher(topic string) (publisher, error) {
	conn, err := nats.Connect(n.url)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(conn, jetstream.WithPublishAsyncMaxPending(*windowN))
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &natsPub{conn: conn, js: js, subject: topic, futures: make(chan natsPending, *windowN), ended: make(chan struct{})}
	go func() {
		defer close(p.ended)
		for pe := range p.futures {
			select {
			case <-pe.f.Ok():
				pe.done(nil)
			case err := <-pe.f.Err():
				pe.done(err)
			}
		}
	}()
	return p, nil
}

// publish blocks in PublishAsync while the window (max pending) is full:
// as long as it takes, as the other systems' windows (the client's
// default gives up after 200 ms, which a loaded R3 cluster exceeds).
func (p *natsPub) publish(body []byte, done func(error)) {
	f, err := p.js.PublishAsync(p.subject, body, jetstream.WithStallWait(time.Minute))
	if err != nil {
		done(err)
		return
	}
	p.futures <- natsPending{f, done}
}

func (p *natsPub) close() {
	close(p.futures)
	<-p.ended
	p.conn.Close()
}

func (n *natsJS) subscribe(topic string, onMsg func([]byte)) (func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := n.js.CreateOrUpdateConsumer(ctx, strings.ToUpper(topic),
		jetstream.ConsumerConfig{Durable: fmt.Sprintf("bench%d", time.Now().UnixNano()), AckPolicy: jetstream.AckAllPolicy})
	if err != nil {
		return nil, err
	}
	var n100 atomic.Int64
	cc, err := cons.Consume(func(m jetstream.Msg) {
		onMsg(m.Data())
		if n100.Add(1)%100 == 0 { // one ack for 100 deliveries
			m.Ack()
		}
	}, jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, err
	}
	return cc.Stop, nil
}
