package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/namesrv"
	"github.com/ferrymq/ferry/remoting"
)

// DefaultTopic is RocketMQ's TBW102: clients that publish to a topic no
// NameServer knows use its route, and the broker creates the topic.
const DefaultTopic = "TBW102"

// Endpoint is the front-end clients reach the broker through, natively:
// the address it registers, and word of route changes beyond the core's
// topics (a consumer group's retry topic). The native front-end is one.
type Endpoint interface {
	// Addr is the host:port clients dial; "" until it listens.
	Addr() string
	// OnRoutesChange calls fn (which must not block) when the routes to
	// register change: its address is known, a group appears.
	OnRoutesChange(fn func())
}

// RegistrarOptions configure a Registrar.
type RegistrarOptions struct {
	Identity Identity
	// NameServers are the NameServer addresses to register with.
	NameServers []string
	// Interval is how often the broker registers (default 30 s); it also
	// registers at once when its topics change.
	Interval time.Duration
	// Endpoint, when set, gives the address registered; none is
	// registered until it listens.
	Endpoint Endpoint
	// Advertise is the address registered when there is no Endpoint (a
	// broker whose native listener is off, behind something that serves
	// its address). With neither, the broker registers
	// remoting.NoListenerAddr and no topics: the NameServers list it, no
	// route points at it.
	Advertise string
	// ClusterKey, when set, signs the registrations with the cluster's
	// secret (package clusterauth); without it they go unsigned, which
	// only a NameServer without a secret accepts, from loopback.
	ClusterKey *clusterauth.Key
	// Epoch is the controller's epoch of a replicated group's master, which
	// lets its registration take the group's name from a deposed master the
	// NameServers still see (0 without a controller).
	Epoch  int64
	Logger *slog.Logger
}

// Registrar registers the broker with every NameServer: at Start, every
// Interval, at once when topics change, and it unregisters at Close.
type Registrar struct {
	b    *core.Broker
	opts RegistrarOptions

	mu    sync.Mutex
	stats Stats
	// Sync's generations: wanted is the latest asked for, passed the
	// latest a finished registration covered; passedCh is closed (and
	// replaced) when a registration finishes. Under mu.
	wanted, passed uint64
	passedCh       chan struct{}
	lastErr        error // the finished registration's, for Sync

	stop chan struct{}
	kick chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Stats count the registrar's registrations.
type Stats struct {
	OK, Refused, Failed int64 // REGISTER_BROKER requests, by result
	// Registered is the NameServers whose latest registration was
	// accepted, of NameServers.
	Registered, NameServers int
}

// Stats returns the registrar's counts.
func (r *Registrar) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats
	st.NameServers = len(r.opts.NameServers)
	return st
}

// NewRegistrar makes the registrar of the broker b.
func NewRegistrar(b *core.Broker, opts RegistrarOptions) (*Registrar, error) {
	if opts.Identity.Cluster == "" {
		opts.Identity.Cluster = DefaultCluster
	}
	if err := CheckName("broker.name", opts.Identity.Name); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := CheckName("broker.cluster", opts.Identity.Cluster); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if opts.Interval <= 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Registrar{b: b, opts: opts, stop: make(chan struct{}), kick: make(chan struct{}, 1), passedCh: make(chan struct{})}
	// A topic created by any front-end or bridge (an MQTT device's first
	// publish) is routable at once, not at the next periodic registration.
	b.OnTopicChange(func(string) { r.Kick() })
	if opts.Endpoint != nil {
		opts.Endpoint.OnRoutesChange(r.Kick)
		if rs, ok := opts.Endpoint.(RouteSyncer); ok {
			rs.SyncRoutesWith(r.Sync)
		}
	}
	return r, nil
}

// Identity is the identity the registrar registers.
func (r *Registrar) Identity() Identity { return r.opts.Identity }

// Start starts registering; without NameServers it does nothing.
func (r *Registrar) Start() {
	if len(r.opts.NameServers) == 0 {
		return
	}
	r.wg.Add(1)
	go r.loop()
}

// Close unregisters from the NameServers and stops registering.
func (r *Registrar) Close() error {
	r.once.Do(func() {
		close(r.stop)
		r.wg.Wait()
	})
	return nil
}

// Kick asks for a registration now.
func (r *Registrar) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Addr is the address registered, and whether clients can reach it there
// (false: remoting.NoListenerAddr). ok is false while the Endpoint does
// not listen yet: nothing is registered then.
func (r *Registrar) Addr() (addr string, reachable, ok bool) {
	switch {
	case r.opts.Endpoint != nil:
		a := r.opts.Endpoint.Addr()
		return a, true, a != ""
	case r.opts.Advertise != "":
		return r.opts.Advertise, true, true
	}
	return remoting.NoListenerAddr(r.opts.Identity.Name, r.opts.Identity.ID), false, true
}

// nsState is the registrar's connection to one NameServer.
type nsState struct {
	conn       *remoting.Client
	registered string // the address last registered there; "" when not
	refusal    refusalLogged
}

// refusalLogged is the last refusal logged for a NameServer.
type refusalLogged struct {
	remark string
	at     time.Time
}

func (r *Registrar) loop() {
	defer r.wg.Done()
	nss := map[string]*nsState{}
	defer r.unregister(nss)
	tick := time.NewTicker(r.opts.Interval)
	defer tick.Stop()
	for {
		r.mu.Lock()
		gen := r.wanted // before the topics are read: they include what Sync waits for
		r.mu.Unlock()
		err := r.registerAll(nss)
		r.mu.Lock()
		r.passed, r.lastErr = gen, err
		close(r.passedCh)
		r.passedCh = make(chan struct{})
		r.mu.Unlock()
		select {
		case <-r.stop:
			return
		case <-tick.C:
		case <-r.kick:
		}
	}
}

// registerAll registers with every NameServer; its error names those that
// did not accept the registration.
func (r *Registrar) registerAll(nss map[string]*nsState) error {
	addr, reachable, ok := r.Addr()
	if !ok {
		return errNotListening // the Endpoint says when it listens
	}
	id := r.opts.Identity
	var topics []remoting.TopicConfig
	if reachable {
		topics = r.topicConfigs()
	}
	req, err := namesrv.RegisterRequest(namesrv.Broker{Cluster: id.Cluster, Name: id.Name, ID: id.ID, Addr: addr, Epoch: r.opts.Epoch}, topics)
	if err != nil {
		r.opts.Logger.Error("cluster: build registration", "err", err)
		return err
	}
	var failed []error
	defer func() {
		n := 0
		for _, st := range nss {
			if st.registered != "" {
				n++
			}
		}
		r.mu.Lock()
		r.stats.Registered = n
		r.mu.Unlock()
	}()
	for _, ns := range r.opts.NameServers {
		st := nss[ns]
		if st == nil {
			st = &nsState{}
			nss[ns] = st
		}
		if st.conn == nil || st.conn.Err() != nil {
			if st.conn != nil {
				st.conn.Close()
				st.conn, st.registered = nil, ""
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			c, err := remoting.Dial(ctx, ns)
			cancel()
			if err != nil {
				r.count(&r.stats.Failed)
				r.opts.Logger.Warn("cluster: NameServer unreachable; retrying at the next registration", "namesrv", ns, "err", err)
				failed = append(failed, fmt.Errorf("%s: %w", ns, err))
				continue
			}
			st.conn = c
		}
		resp, err := r.invoke(st.conn, req)
		switch {
		case err == nil:
			r.count(&r.stats.OK)
			if st.registered != addr {
				r.opts.Logger.Info("cluster: registered with the NameServer", "namesrv", ns, "cluster", id.Cluster,
					"broker", id.Name, "id", id.ID, "addr", addr, "topics", len(topics))
			}
			st.registered, st.refusal = addr, refusalLogged{}
		case errors.Is(err, remoting.ErrNoPermission):
			// Refused: the secret differs, or another broker holds this
			// broker's name. Said at ERROR, once per register interval
			// (registrations also run when topics change).
			r.count(&r.stats.Refused)
			st.registered = ""
			if last := st.refusal; last.at.IsZero() || last.remark != resp.Remark || time.Since(last.at) >= r.opts.Interval {
				r.opts.Logger.Error("cluster: the NameServer refused this broker's registration: clients cannot reach it through that NameServer; retrying",
					"namesrv", ns, "broker", id.Name, "signed", r.opts.ClusterKey != nil, "retry_every", r.opts.Interval, "err", err)
				st.refusal = refusalLogged{remark: resp.Remark, at: time.Now()}
			}
			failed = append(failed, fmt.Errorf("%s: %w", ns, err))
		default:
			r.count(&r.stats.Failed)
			st.registered = ""
			r.opts.Logger.Warn("cluster: registration failed", "namesrv", ns, "err", err)
			failed = append(failed, fmt.Errorf("%s: %w", ns, err))
		}
	}
	return errors.Join(failed...)
}

func (r *Registrar) count(n *int64) {
	r.mu.Lock()
	*n++
	r.mu.Unlock()
}

// invoke signs a copy of req, when there is a key, and sends it on c.
func (r *Registrar) invoke(c *remoting.Client, req *remoting.Command) (*remoting.Command, error) {
	cp := *req
	cp.Fields = slices.Clone(req.Fields) // signing changes them
	if k := r.opts.ClusterKey; k != nil {
		if err := k.Sign(&cp, time.Now()); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.Invoke(ctx, &cp)
	if err == nil {
		err = remoting.ResponseError(resp)
	}
	return resp, err
}

// unregister tells every NameServer that accepted the broker that it
// goes, and closes the connections (which would drop it anyway).
func (r *Registrar) unregister(nss map[string]*nsState) {
	id := r.opts.Identity
	for ns, st := range nss {
		if st.conn == nil {
			continue
		}
		if st.registered != "" {
			req := remoting.NewRequest(remoting.UnregisterBroker, remoting.Pairs(
				"brokerName", id.Name, "brokerAddr", st.registered, "clusterName", id.Cluster, "brokerId", strconv.FormatInt(id.ID, 10),
			), nil)
			if _, err := r.invoke(st.conn, req); err != nil {
				r.opts.Logger.Warn("cluster: unregister", "namesrv", ns, "err", err)
			}
		}
		st.conn.Close()
	}
}

// topicConfigs is what the broker serves: its topics, the retry topics of
// its consumer groups and of any group to come (namesrv.AnyRetryTopic),
// and TBW102 when topics are created on publish.
func (r *Registrar) topicConfigs() []remoting.TopicConfig {
	const perm = remoting.PermRead | remoting.PermWrite
	var out []remoting.TopicConfig
	for _, t := range r.b.Topics() {
		out = append(out, remoting.TopicConfig{TopicName: t.Name, ReadQueueNums: t.Queues, WriteQueueNums: t.Queues, Perm: perm})
	}
	for _, g := range r.b.Groups() {
		out = append(out, remoting.TopicConfig{TopicName: core.RetryTopic(g), ReadQueueNums: 1, WriteQueueNums: 1, Perm: perm})
	}
	out = append(out, remoting.TopicConfig{TopicName: namesrv.AnyRetryTopic, ReadQueueNums: 1, WriteQueueNums: 1, Perm: perm})
	if r.b.AutoCreatesTopics() {
		n := r.b.DefaultQueues()
		out = append(out, remoting.TopicConfig{TopicName: DefaultTopic, ReadQueueNums: n, WriteQueueNums: n, Perm: perm})
	}
	return out
}

// Reachable turns a listen address with no host (":9876") into one to
// dial.
func Reachable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
