// Package mqtt is Ferry's MQTT front-end: MQTT 3.1.1 and 5 over TCP, TLS and
// WebSocket. The protocol engine is mochi-mqtt (connections, packets, keep
// alive, subscription bookkeeping, retained-message index); what is stored
// and delivered is Ferry's core. A PUBLISH is stored in the core before it is
// acknowledged, and every MQTT subscription is read from the core through a
// consumer group, so messages from any protocol reach MQTT subscribers by
// one path, and a slow or absent subscriber's backlog stays in the store.
// See docs/mqtt.md.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/internal/lograte"
)

// Guard authenticates clients and authorizes their topics (an
// *auth.Authenticator). Topics are full MQTT topic names; filters may hold
// wildcards.
type Guard interface {
	Authenticate(user, password string) error
	Allow(user, clientID string, acc auth.Access, topic string) bool
	AllowFilter(user, clientID, filter string) bool
	// AllowGroup guards shared subscriptions: $share/G/… joins core group
	// G, shared with native consumers, so it needs G's join permission.
	AllowGroup(user string, want auth.GroupPerm, group string) bool
}

// Config configures the MQTT front-end. An empty address switches that
// listener off.
type Config struct {
	Addr        string // MQTT over TCP, e.g. ":1883"
	WSAddr      string // MQTT over WebSocket, path /mqtt, e.g. ":8083"
	TLSAddr     string // MQTT over TLS, e.g. ":8883"; needs TLSCertFile and TLSKeyFile
	TLSCertFile string
	TLSKeyFile  string

	// Flags name the settings of the three addresses in errors ("change it
	// with --mqtt-addr").
	Flags Flags

	Rules []Rule // topic mapping rules; the first level is the default

	// MaxPacketSize is the largest packet accepted and sent, in bytes.
	MaxPacketSize uint32
	// MaxInflight is how many QoS 1/2 messages a subscription's feed has
	// sent and not had acknowledged; the client's own receive maximum
	// lowers it. It is also the receive maximum offered to clients.
	MaxInflight int
	// MaxQueued bounds what waits for a disconnected persistent session:
	// past it, the oldest messages are skipped (ferry_mqtt_dropped_total).
	MaxQueued int64
	// MaxConnections is the most connections each listener keeps open at
	// once, logged in or not; past it a connection is answered "server
	// unavailable" (3.1.1) or "server busy" (5) if it sends its CONNECT
	// at once, else closed (ferry_mqtt_refused_connections_total).
	MaxConnections int64
	// ConnectTimeout is how long a new connection has to send its
	// CONNECT (TLS handshake included); then it is closed.
	ConnectTimeout time.Duration
	// MaxConnectSize caps the first packet, the CONNECT, read before the
	// client is known (MaxPacketSize caps it too); a larger one is refused
	// from its header, unread.
	MaxConnectSize uint32
	// MaxTopicLevels and MaxTopicLength cap topic names and filters:
	// levels (separated by "/") and bytes.
	MaxTopicLevels int
	MaxTopicLength int
	// MaxTopicAlias is the Topic Alias Maximum offered to MQTT 5 clients:
	// how many topic aliases a client may set on a connection. 0: the
	// default (10); -1: none.
	MaxTopicAlias int
	// ResendInterval is how long a QoS 1/2 delivery waits for its
	// acknowledgement before it is sent again (DUP set).
	ResendInterval time.Duration
	// MaxSessionExpiry caps the session expiry a client may ask for, in
	// seconds; persistent 3.1.1 sessions get it too. 0: no cap.
	MaxSessionExpiry uint32
	// MaxKeepAlive caps the keep alive of MQTT 5 clients, in seconds: one
	// that asks for more, or for none (0), is told this one as Server Keep
	// Alive in CONNACK [MQTT-3.2.2-21] and is disconnected after one and a
	// half of it without a packet. 3.1.1 has no way to say it; its clients
	// keep theirs. 0: no cap.
	MaxKeepAlive uint16

	Guard  Guard // nil: everyone is allowed everything
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = 4 << 20
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 1024
	}
	if c.MaxInflight > 65535 {
		c.MaxInflight = 65535
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 1_000_000
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 1_000_000
	}
	if c.ResendInterval <= 0 {
		c.ResendInterval = 20 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.MaxConnectSize == 0 {
		c.MaxConnectSize = 64 << 10
	}
	c.MaxConnectSize = min(c.MaxConnectSize, c.MaxPacketSize)
	if c.MaxTopicLevels <= 0 {
		c.MaxTopicLevels = 128
	}
	if c.MaxTopicLength <= 0 {
		c.MaxTopicLength = 4096
	}
	switch {
	case c.MaxTopicAlias == 0:
		c.MaxTopicAlias = 10
	case c.MaxTopicAlias < 0:
		c.MaxTopicAlias = 0
	case c.MaxTopicAlias > 65535:
		c.MaxTopicAlias = 65535
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Flags name the settings of the listeners' addresses.
type Flags struct{ Addr, WSAddr, TLSAddr string }

// Stats are the front-end's counters, for metrics.
type Stats struct {
	Connections   int64 // connected now
	Sessions      int64 // persistent sessions known (connected or not)
	Received      int64 // PUBLISH packets stored
	Refused       int64 // PUBLISH packets refused (topic, size, disk, ACL)
	Delivered     int64 // PUBLISH packets sent to subscribers
	Resent        int64 // deliveries sent again after ResendInterval
	Dropped       int64 // messages skipped for an offline session past MaxQueued
	Expired       int64 // deliveries not sent: the message's expiry interval had passed
	InflightTotal int64 // QoS 1/2 deliveries awaiting acknowledgement
	BytesIn       int64 // read from clients
	BytesOut      int64 // written to clients
}

// Server is the MQTT front-end.
type Server struct {
	cfg    Config
	core   *core.Broker
	log    *slog.Logger
	mq     *mochi.Server
	mapper *mapper
	state  *stateStore

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sessions map[string]*session // connected sessions, by client id
	wills    map[string]*time.Timer
	expiring map[string]int64  // retained messages that expire: topic → unix ms
	addrs    map[string]string // listener id → bound address

	received, delivered, resent, dropped, expired atomic.Int64
	refusedBy                                     [numCauses]atomic.Int64 // Stats().Refused is their sum
	publishLatency                                prometheus.Histogram
	hops                                          *hopTimer

	acker *acker // QoS 1 PUBACKs once the publishes are durable; made at New, run from Start

	listeners []*guardedListener          // for ListenerHealth and metrics; under mu
	hits      map[string]*limitHits       // by limit key; fixed at New
	subReason map[*mochi.Client]subReason // under mu
}

// limitHits counts one limit's hits and rate-limits their log lines.
type limitHits struct {
	atomic.Int64
	log lograte.Limiter
}

// subReason is the reason string of the SUBACK for packet id.
type subReason struct {
	id     uint16
	reason string
}

// New makes the front-end over b; Start opens its listeners.
func New(b *core.Broker, cfg Config) (*Server, error) {
	cfg.defaults()
	mp, err := newMapper(cfg.Rules)
	if err != nil {
		return nil, err
	}
	st, err := openState(b, cfg.Logger)
	if err != nil {
		return nil, err
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.MaxPacketSize
	caps.TopicAliasMaximum = uint16(cfg.MaxTopicAlias) // [MQTT-3.2.2-17]
	caps.ReceiveMaximum = uint16(cfg.MaxInflight)
	caps.MaximumInflight = uint16(cfg.MaxInflight)
	if cfg.MaxSessionExpiry > 0 {
		caps.MaximumSessionExpiryInterval = cfg.MaxSessionExpiry
	}
	caps.MaximumMessageExpiryInterval = 0 // messages live as long as the store keeps them
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	// The engine's per-client queue of pending writes carries only what it
	// sends itself (retained messages at SUBSCRIBE, $SYS): Ferry's
	// deliveries are written by the feeds. The queue holds memory only
	// while packets wait in it (third_party/mochi-mqtt-server); the bound
	// is what a client that does not read can have the broker hold for it,
	// past which the engine drops packets.
	caps.MaximumClientWritesPending = 256
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, core: b, log: cfg.Logger, mapper: mp, state: st, ctx: ctx, cancel: cancel,
		sessions: map[string]*session{}, wills: map[string]*time.Timer{}, expiring: map[string]int64{}, addrs: map[string]string{},
		hits: map[string]*limitHits{}, subReason: map[*mochi.Client]subReason{}, publishLatency: newPublishLatency(), hops: newHopTimer(),
	}
	s.acker = newAcker(s)
	for _, k := range []string{limitConnectTimeout, limitConnectSize, limitPacketSize, limitTopicLevels, limitTopicLength} {
		s.hits[k] = &limitHits{log: lograte.Limiter{Every: 10 * time.Second}}
	}
	s.mq = mochi.New(&mochi.Options{
		Capabilities:           caps,
		Logger:                 slog.New(quieter{cfg.Logger.Handler()}), // the engine's info lines are noise to Ferry's users
		SysTopicResendInterval: 10,
		OnReadIdle:             s.acker.readIdle,
	})
	if err := s.mq.AddHook(&hook{s: s}, nil); err != nil {
		st.close()
		return nil, err
	}
	return s, nil
}

// Start opens the configured listeners and starts serving. An address that
// cannot be bound is an error naming it.
func (s *Server) Start() error {
	type spec struct {
		id, addr, flag string
		tls, ws        bool
	}
	var tlsCfg *tls.Config
	if s.cfg.TLSAddr != "" {
		if s.cfg.TLSCertFile == "" || s.cfg.TLSKeyFile == "" {
			return errors.New("mqtt: the TLS listener needs a certificate and a key (mqtt.tls-cert, mqtt.tls-key)")
		}
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("mqtt: TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	fl := s.cfg.Flags
	for _, sp := range []spec{{"tcp", s.cfg.Addr, fl.Addr, false, false}, {"tls", s.cfg.TLSAddr, fl.TLSAddr, true, false}, {"ws", s.cfg.WSAddr, fl.WSAddr, false, true}} {
		if sp.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", sp.addr)
		if err != nil {
			s.closeListeners()
			if sp.flag != "" {
				return fmt.Errorf("mqtt: cannot listen on %s (change it with %s): %w", sp.addr, sp.flag, err)
			}
			return fmt.Errorf("mqtt: %s listener on %s: %w", sp.id, sp.addr, err)
		}
		gl := newGuardedListener(sp.id, ln, s.cfg.MaxConnections, s.log)
		s.mu.Lock()
		s.listeners = append(s.listeners, gl)
		s.mu.Unlock()
		ln = gl
		if sp.tls {
			ln = tls.NewListener(ln, tlsCfg)
		}
		var l listeners.Listener = &streamListener{id: sp.id, ln: ln, disconnect: s.disconnectListener, serve: s.serveConn}
		if sp.ws {
			l = newWSListener(sp.id, ln, s.disconnectListener, s.serveConn, s.cfg.ConnectTimeout, s.log)
		}
		if err := s.mq.AddListener(l); err != nil {
			ln.Close()
			s.closeListeners()
			return fmt.Errorf("mqtt: %s listener: %w", sp.id, err)
		}
		s.mu.Lock()
		s.addrs[sp.id] = ln.Addr().String()
		s.mu.Unlock()
		s.log.Info("mqtt: listening", "listener", sp.id, "addr", ln.Addr().String())
	}
	s.loadRetained()
	if err := s.mq.Serve(); err != nil {
		s.closeListeners()
		return fmt.Errorf("mqtt: serve: %w", err)
	}
	s.fireCrashWills()
	s.wg.Add(1)
	go s.janitor()
	s.wg.Add(1)
	go s.acker.run(s.ctx)
	return nil
}

// disconnectListener disconnects the clients of listener id, as the
// engine's close callback would, but listing them with Clients.GetAll, which
// read-locks the client map once (see the note in listeners.go).
func (s *Server) disconnectListener(id string) {
	for _, cl := range s.mq.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = s.mq.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

func (s *Server) closeListeners() {
	s.mq.Listeners.CloseAll(func(string) {})
}

// serveConn reads a new connection's CONNECT within the connect timeout
// and the pre-CONNECT size cap, answers it "server busy" if the connection
// is past its listener's maximum, and hands the rest to the engine with
// every packet's size checked (limitConn).
func (s *Server) serveConn(listener string, conn net.Conn, establish listeners.EstablishFn) error {
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ConnectTimeout)) // the engine sets the keep-alive deadline after CONNECT
	pre, head, err := readConnect(conn, int(s.cfg.MaxConnectSize))
	if err != nil {
		defer conn.Close()
		var ne net.Error
		switch {
		case hit(err) != "": // the CONNECT is over the cap: CONNACK 0x95 (MQTT 5) [MQTT-4.13.2-1]
			s.limitHit(hit(err), err, "listener", listener, "remote", conn.RemoteAddr().String())
			if b := connack(head.version, 0x95, err.Error()); b != nil {
				_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = conn.Write(b)
			}
		case errors.As(err, &ne) && ne.Timeout():
			err = fmt.Errorf("mqtt: no CONNECT within %v: %w", s.cfg.ConnectTimeout, err)
			s.limitHit(limitConnectTimeout, err, "listener", listener, "remote", conn.RemoteAddr().String())
		}
		return err
	}
	if overLimit(conn) {
		defer conn.Close()
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		if b := connack(head.version, 0x89, "server busy: the listener is at its maximum of connections ("+limitConnections+")"); b != nil {
			_, _ = conn.Write(b)
		}
		return fmt.Errorf("mqtt: connection refused: the %s listener is at its maximum of %d connections (%s)", listener, s.cfg.MaxConnections, limitConnections)
	}
	sc := newSendConn(conn)
	lc := &limitConn{Conn: sc, pending: pre, version: head.version, max: int(s.cfg.MaxPacketSize),
		onHit: func(key string, err error) {
			s.limitHit(key, err, "listener", listener, "remote", conn.RemoteAddr().String())
		}}
	return establish(listener, &batchConn{Conn: lc, send: sc})
}

// limitHit counts a limit hit and logs it, at most once per key every ten
// seconds.
func (s *Server) limitHit(key string, err error, attrs ...any) {
	if c := s.hits[key]; c != nil {
		c.Add(1)
		ok, held := c.log.Allow()
		if !ok {
			return
		}
		attrs = append(attrs, "held_back", held)
	}
	s.log.Info("mqtt: limit hit", append([]any{"key", key, "err", err}, attrs...)...)
}

// ListenerHealth is nil while every MQTT listener accepts connections, and
// else says which does not and why: out of file descriptors (retried with
// a back-off until it passes), failed for good, or closed.
func (s *Server) ListenerHealth() error {
	s.mu.Lock()
	ls := slices.Clone(s.listeners)
	s.mu.Unlock()
	var errs []error
	for _, l := range ls {
		if err := l.health(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Addr returns the bound address of listener "tcp", "tls" or "ws", or "".
func (s *Server) Addr(listener string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[listener]
}

// Close disconnects every client, stops the feeds and saves the sessions.
func (s *Server) Close() error {
	err := s.mq.Close()
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	for _, t := range s.wills {
		t.Stop()
	}
	s.mu.Unlock()
	for _, ss := range s.connected() {
		ss.end(false)
	}
	s.state.close()
	return err
}

// Stats returns the front-end's counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Connections: atomic.LoadInt64(&s.mq.Info.ClientsConnected),
		Received:    s.received.Load(), Refused: s.refusedTotal(), Delivered: s.delivered.Load(),
		Resent: s.resent.Load(), Dropped: s.dropped.Load(), Expired: s.expired.Load(),
		BytesIn: atomic.LoadInt64(&s.mq.Info.BytesReceived), BytesOut: atomic.LoadInt64(&s.mq.Info.BytesSent),
	}
	s.state.mu.Lock()
	st.Sessions = int64(len(s.state.sessions))
	s.state.mu.Unlock()
	for _, ss := range s.connected() {
		ss.mu.Lock()
		st.InflightTotal += int64(len(ss.out))
		ss.mu.Unlock()
	}
	return st
}

// connected returns the sessions connected now.
func (s *Server) connected() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Sized at once: the janitor asks every few seconds, and a slice grown
	// from empty allocates twice what 100,000 sessions need.
	return slices.AppendSeq(make([]*session, 0, len(s.sessions)), maps.Values(s.sessions))
}

// janitor re-sends unacknowledged deliveries, keeps the feeds' core
// members alive, and trims what waits for offline sessions.
func (s *Server) janitor() {
	defer s.wg.Done()
	tick := time.NewTicker(min(s.cfg.ResendInterval/2, 5*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			for _, ss := range s.connected() {
				ss.resend(now)
				ss.heartbeat()
			}
			s.trimOffline()
		}
	}
}

// trimOffline bounds the backlog of the persistent sessions that are away.
func (s *Server) trimOffline() {
	for _, st := range s.state.allSessions() {
		s.mu.Lock()
		_, online := s.sessions[st.ID]
		s.mu.Unlock()
		if online || len(st.Subs) == 0 {
			continue
		}
		var subs []core.GroupSub
		for _, sub := range st.Subs {
			if _, _, shared := shareOf(sub.Filter); shared || strings.HasPrefix(sub.Filter, "$") {
				continue // a share's backlog belongs to its group, not to one member
			}
			if gs, err := s.mapper.filter(sub.Filter); err == nil {
				gs.Since = time.UnixMilli(sub.At)
				subs = append(subs, gs)
			}
		}
		n, err := s.core.TrimBacklog(ownGroup(st.ID), subs, s.cfg.MaxQueued)
		if err != nil {
			s.log.Warn("mqtt: trimming an offline session's backlog failed", "client", st.ID, "err", err)
			continue
		}
		if n > 0 {
			s.dropped.Add(n)
			s.log.Warn("mqtt: offline session over its queue limit; oldest messages skipped",
				"client", st.ID, "skipped", n, "limit", s.cfg.MaxQueued, "key", "mqtt.max-queued")
		}
	}
}

// quieter passes on only warnings and errors.
type quieter struct{ slog.Handler }

func (q quieter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && q.Handler.Enabled(ctx, l)
}

// Handle drops the engine's warning about a keep-alive below its liking: a
// keep-alive of 0 is the protocol's, and any client could have Ferry log
// one line per CONNECT.
func (q quieter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == mochi.ErrMinimumKeepalive.Error() {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quieter) WithAttrs(a []slog.Attr) slog.Handler { return quieter{q.Handler.WithAttrs(a)} }
func (q quieter) WithGroup(n string) slog.Handler      { return quieter{q.Handler.WithGroup(n)} }
