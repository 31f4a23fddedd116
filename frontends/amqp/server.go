// Package amqp is Ferry's AMQP 0-9-1 front-end: RabbitMQ's clients
// (amqp091-go, pika, amqplib, the Java client) connect to Ferry and share
// its topics with MQTT and native clients. Exchanges map routing keys onto
// core topics and subjects (package routingkey), a queue is a core
// consumer group whose subscriptions are its bindings, and declarations
// are state in the log. See docs/amqp.md.
package amqp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/frontends/amqp/amqpconf"
)

// Guard authenticates clients and authorizes their topics and queues (an
// *auth.Authenticator). Topics are MQTT-style paths, topic/subject.
type Guard interface {
	Authenticate(user, password string) error
	Allow(user, clientID string, acc auth.Access, topic string) bool
	AllowFilter(user, clientID, filter string) bool
	AllowGroup(user string, want auth.GroupPerm, group string) bool
}

// Config configures the front-end. An empty address switches that
// listener off.
type Config struct {
	Addr        string // AMQP over TCP, e.g. ":5672"
	TLSAddr     string // AMQP over TLS, e.g. ":5671"; needs TLSCertFile and TLSKeyFile
	TLSCertFile string
	TLSKeyFile  string
	// Flags name the settings of the addresses in errors.
	AddrFlag, TLSAddrFlag string

	// FrameMax is the largest frame, in bytes, offered at tune (default
	// 128 KiB, RabbitMQ's); ChannelMax the most channels a connection
	// opens (default 2047, RabbitMQ's).
	FrameMax   uint32
	ChannelMax uint16
	// Heartbeat is the heartbeat interval offered at tune (default 60 s;
	// the client may lower it or, with 0, switch it off).
	Heartbeat time.Duration
	// MaxMessageSize bounds a published message's body (default 4 MiB,
	// the store's default limit).
	MaxMessageSize int
	// MaxUnacked bounds the unacknowledged deliveries of a channel, over
	// any prefetch (default 65535).
	MaxUnacked int
	// MaxUnconfirmed bounds a confirm-mode channel's publishes waiting
	// for their confirm (default 65536): the reader waits past it.
	MaxUnconfirmed int
	// MaxTxBytes bounds the message bytes a transaction holds (default 64 MiB).
	MaxTxBytes int
	// MaxConnections bounds the connections open at once (default 100,000).
	MaxConnections int64
	// HandshakeTimeout bounds the negotiation (default 10 s); WriteTimeout
	// one write to a client (default 30 s).
	HandshakeTimeout time.Duration
	WriteTimeout     time.Duration

	Guard   Guard // nil: everyone is allowed everything
	Version string
	Logger  *slog.Logger
}

// withDefaults fills what c leaves unset with the configuration's
// defaults (amqpconf.Default), the one place they are written.
func (c Config) withDefaults() Config {
	d := amqpconf.Default()
	def := func(v *int, to int) {
		if *v <= 0 {
			*v = to
		}
	}
	if c.FrameMax == 0 {
		c.FrameMax = uint32(d.FrameMax)
	}
	c.FrameMax = max(c.FrameMax, minFrameMax)
	if c.ChannelMax == 0 {
		c.ChannelMax = uint16(d.ChannelMax)
	}
	if c.Heartbeat < 0 {
		c.Heartbeat = 0
	} else if c.Heartbeat == 0 {
		c.Heartbeat = d.Heartbeat
	}
	def(&c.MaxMessageSize, d.MaxMessageSize)
	def(&c.MaxUnacked, d.MaxUnacked)
	def(&c.MaxUnconfirmed, d.MaxUnconfirmed)
	def(&c.MaxTxBytes, d.MaxTxBytes)
	if c.MaxConnections <= 0 {
		c.MaxConnections = d.MaxConnections
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.AddrFlag == "" {
		c.AddrFlag = "--amqp-addr"
	}
	if c.TLSAddrFlag == "" {
		c.TLSAddrFlag = "--amqp-tls-addr"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Server is the AMQP front-end.
type Server struct {
	cfg    Config
	broker *core.Broker
	log    *slog.Logger
	vhost  *vhost
	tls    *tls.Config

	metrics *metrics
	open    atomic.Int64
	// lastPublish is when a publish last reached the core (unix ns).
	lastPublish atomic.Int64
	block       atomic.Bool   // connection.blocked sent: the store refused for want of space
	blockMu     sync.Mutex    // orders block's changes and their notices
	done        chan struct{} // closed by Close

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*conn]struct{}
	refused   map[net.Conn]struct{} // connections over amqp.max-connections being told so
	refusing  atomic.Int64          // len(refused), read without mu
	wg        sync.WaitGroup
	closed    bool
}

// New builds the front-end over broker, loading its durable exchanges,
// queues and bindings from the state log.
func New(broker *core.Broker, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, broker: broker, log: cfg.Logger, metrics: newMetrics(), conns: map[*conn]struct{}{},
		refused: map[net.Conn]struct{}{}, done: make(chan struct{})}
	if cfg.TLSAddr != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("amqp: TLS certificate: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	v, err := newVhost(s)
	if err != nil {
		return nil, err
	}
	s.vhost = v
	return s, nil
}

// Start binds the listeners and serves them.
func (s *Server) Start() error {
	for _, l := range []struct {
		addr, flag string
		tls        bool
	}{{s.cfg.Addr, s.cfg.AddrFlag, false}, {s.cfg.TLSAddr, s.cfg.TLSAddrFlag, true}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			s.Close()
			return fmt.Errorf("amqp: listen on %s: %w (change it with %s)", l.addr, err, l.flag)
		}
		if l.tls {
			ln = tls.NewListener(ln, s.tls)
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, ln)
		s.mu.Unlock()
		s.log.Info("amqp: listening", "addr", ln.Addr().String(), "tls", l.tls)
		s.wg.Add(1)
		go s.accept(ln)
	}
	return nil
}

// Addrs are the addresses the listeners bound (TCP first).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, ln := range s.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("amqp: accepting a connection failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if s.open.Add(1) > s.cfg.MaxConnections {
			s.open.Add(-1)
			s.metrics.limits.WithLabelValues("amqp.max-connections").Inc()
			s.log.Debug("amqp: connection refused: amqp.max-connections reached", "remote", nc.RemoteAddr().String(), "max", s.cfg.MaxConnections)
			s.refuse(nc)
			continue
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			s.open.Add(-1)
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer s.open.Add(-1)
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops the listeners, closes every connection with 320
// CONNECTION_FORCED and stops the queues' dispatchers.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for _, ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	for nc := range s.refused {
		nc.Close()
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(connErr(codeConnectionForced, "broker shutdown"))
		time.AfterFunc(closeWait, func() { c.nc.Close() })
	}
	s.wg.Wait()
	s.vhost.close()
	return nil
}

// Ready reports whether the listeners are up (for /readyz).
func (s *Server) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("amqp: closed")
	}
	return nil
}

// blocked tells publishers, with connection.blocked, when the store
// refuses messages for want of disk space, and connection.unblocked when it
// takes them again [RabbitMQ connection.blocked]: at the next stored
// publish, or when the data directory's file system has unblockFree bytes
// free again (a blocked client publishes nothing, so its own publishes
// would never tell it).
func (s *Server) blocked(err error) {
	full := errors.Is(err, core.ErrDiskFull)
	if s.block.Load() == full || (err != nil && !full) {
		return
	}
	s.blockMu.Lock()
	defer s.blockMu.Unlock()
	if s.block.Load() == full {
		return
	}
	s.block.Store(full)
	if full {
		s.log.Warn("amqp: publishers blocked: the store's disk is full", "dir", s.broker.DataDir(), "err", err)
		go s.watchDisk()
	} else {
		s.log.Info("amqp: publishers unblocked: the store takes messages again")
	}
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		if !c.ready.Load() || !c.capability("connection.blocked") {
			continue
		}
		if full {
			c.sendMethod(0, mConnBlocked, blockedReason)
		} else {
			c.sendMethod(0, mConnUnblocked)
		}
	}
}

// blockedReason is connection.blocked's reason.
const blockedReason = "disk full: the store refuses messages"

// unblockFree is the free space on the data directory's file system that
// unblocks publishers: the space the log reserves at a time when the disk
// is nearly full, many times over.
const unblockFree = 1 << 20

// diskProbe is how often a blocked front-end looks at the free space.
var diskProbe = time.Second

// watchDisk runs while publishers are blocked and unblocks them once the
// data directory's file system has room again.
func (s *Server) watchDisk() {
	t := time.NewTicker(diskProbe)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if !s.block.Load() {
			return
		}
		var st unix.Statfs_t
		if err := unix.Statfs(s.broker.DataDir(), &st); err != nil {
			s.log.Warn("amqp: reading the data directory's free space failed", "err", err)
			continue
		}
		if int64(st.Bavail)*st.Bsize >= unblockFree {
			s.blocked(nil)
			return
		}
	}
}

// metrics are the front-end's counters.
type metrics struct {
	connections prometheus.Gauge
	published   prometheus.Counter
	delivered   prometheus.Counter
	returned    prometheus.Counter
	errors      *prometheus.CounterVec
	refused     *prometheus.CounterVec
	limits      *prometheus.CounterVec
	// publishLatency times basic.publish from its body read to its message
	// stored in the core (not its confirm, which waits for durability).
	publishLatency prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_amqp_connections", Help: "AMQP connections open, negotiated."}),
		published:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_amqp_published_total", Help: "basic.publish messages received."}),
		delivered:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_amqp_delivered_total", Help: "Messages sent with basic.deliver or basic.get-ok."}),
		returned:    prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_amqp_returned_total", Help: "Mandatory messages returned unroutable."}),
		errors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_amqp_errors_total", Help: "Channels and connections closed with an error, by reply code."}, []string{"code"}),
		refused:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_amqp_refused_total", Help: "Requests refused by the auth rules, by what was checked."}, []string{"check"}),
		limits:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_amqp_limit_hits_total", Help: "Requests refused at a limit, by its key."}, []string{"limit"}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ferry_amqp_publish_duration_seconds",
			Help:    "Time to store a basic.publish in the core, outside transactions (its confirm waits for durability besides).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12)}), // 50 µs … 1.2 s
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.connections, m.published, m.delivered, m.returned, m.errors, m.refused, m.limits, m.publishLatency}
}

// Describe and Collect make the Server a prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range s.metrics.collectors() {
		c.Describe(ch)
	}
}

func (s *Server) Collect(ch chan<- prometheus.Metric) {
	for _, c := range s.metrics.collectors() {
		c.Collect(ch)
	}
}
