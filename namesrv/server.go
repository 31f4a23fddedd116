package namesrv

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/internal/lograte"
	"github.com/ferrymq/ferry/remoting"
)

// Options configure a NameServer.
type Options struct {
	// BrokerTimeout drops a broker that has not registered again for this
	// long (default 120 s; brokers register every 30 s).
	BrokerTimeout time.Duration
	// ClusterKey, when set, is the cluster's key: REGISTER_BROKER and
	// UNREGISTER_BROKER are accepted only signed with it (package
	// clusterauth), from any address. Nil: they are accepted unsigned,
	// and only from loopback peers.
	ClusterKey *clusterauth.Key
	// Limits bound what clients can take (docs/native.md, "Limits"); zero
	// fields take remoting's defaults.
	Limits remoting.Limits
	Logger *slog.Logger
}

// Server is a NameServer. Start it with Serve; Close stops it.
type Server struct {
	opts Options
	srv  *remoting.Server

	gate clusterauth.Gate // its Verifier is nil without a cluster key

	mu      sync.Mutex
	reg     *registry
	addr    string   // where it listens, once it does
	dropped [2]int64 // brokers dropped: [dropSilent], [dropClosed]
	refused [numRefuseReasons]int64

	refusalLimits [numRefuseReasons]lograte.Limiter // rate-limit the refusal lines, one limiter a reason

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New makes a NameServer.
func New(opts Options) *Server {
	if opts.BrokerTimeout <= 0 {
		opts.BrokerTimeout = 120 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, reg: newRegistry(), stop: make(chan struct{})}
	s.gate = clusterauth.Gate{Role: "NameServer", Sender: "broker",
		NoSecret: "this NameServer has no cluster secret and accepts brokers only from loopback; " +
			"%s is not (set the same cluster-secret or cluster-secret-file on the NameServer and every broker)"}
	if opts.ClusterKey != nil {
		s.gate.Verifier = clusterauth.NewVerifier(opts.ClusterKey)
	}
	for i := range s.refusalLimits {
		s.refusalLimits[i].Every = refusalLogEvery
	}
	s.srv = remoting.NewServer(remoting.HandlerFunc(s.serve), remoting.ServerOptions{Limits: opts.Limits, KeyPrefix: "native.",
		ConnsKey: "namesrv-max-connections", Logger: opts.Logger, OnClose: s.connClosed})
	return s
}

// Serve serves on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.wg.Add(1)
	go s.janitor()
	return s.srv.Serve(ln)
}

func (s *Server) setAddr(a string) {
	s.mu.Lock()
	s.addr = a
	s.mu.Unlock()
}

// Addr is the address the NameServer listens on ("" before it does).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// AcceptErr is why the listener fails to accept connections now, nil
// while it accepts them: a readiness check.
func (s *Server) AcceptErr() error { return s.srv.AcceptErr() }

// Close stops serving.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		err = s.srv.Close()
		s.wg.Wait()
	})
	return err
}

// Why brokers are dropped, indexes of Server.dropped and Stats.Dropped.
const (
	dropSilent = iota // silent past BrokerTimeout
	dropClosed        // their connection closed
)

// Stats describe the NameServer's registry.
type Stats struct {
	Brokers     int // registered now
	Topics      int // served by some broker
	Connections int // open now, brokers' and clients'
	// DroppedSilent and DroppedClosed count the brokers dropped for
	// silence past BrokerTimeout and for a closed connection.
	DroppedSilent, DroppedClosed int64
	// Refused counts the REGISTER_BROKER and UNREGISTER_BROKER requests
	// refused, by reason (see refuseReasons).
	Refused map[string]int64
}

// Stats returns the registry's counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{Brokers: len(s.reg.brokers), Topics: len(s.reg.topics()),
		DroppedSilent: s.dropped[dropSilent], DroppedClosed: s.dropped[dropClosed], Refused: map[string]int64{}}
	for i, r := range refuseReasons {
		st.Refused[r] = s.refused[i]
	}
	s.mu.Unlock()
	st.Connections = s.srv.Stats().Open
	return st
}

func (s *Server) janitor() {
	defer s.wg.Done()
	tick := time.NewTicker(min(s.opts.BrokerTimeout/4, 10*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-tick.C:
			s.mu.Lock()
			gone := s.reg.expire(now.Add(-s.opts.BrokerTimeout))
			s.dropped[dropSilent] += int64(len(gone))
			s.mu.Unlock()
			for _, b := range gone {
				s.opts.Logger.Warn("namesrv: broker dropped: silent too long", "broker", b.Name, "addr", b.Addr, "timeout", s.opts.BrokerTimeout)
			}
		}
	}
}

func (s *Server) connClosed(c *remoting.Conn) {
	s.mu.Lock()
	gone := s.reg.connClosed(c)
	s.dropped[dropClosed] += int64(len(gone))
	s.mu.Unlock()
	for _, b := range gone {
		s.opts.Logger.Info("namesrv: broker dropped: connection closed", "broker", b.Name, "addr", b.Addr)
	}
}

// registerBody is RocketMQ's RegisterBrokerBody.
type registerBody struct {
	TopicConfigSerializeWrapper struct {
		TopicConfigTable map[string]remoting.TopicConfig `json:"topicConfigTable"`
		DataVersion      json.RawMessage                 `json:"dataVersion,omitempty"`
	} `json:"topicConfigSerializeWrapper"`
	FilterServerList []string `json:"filterServerList"`
}

func (s *Server) serve(_ context.Context, c *remoting.Conn, req *remoting.Command) *remoting.Command {
	switch req.Code {
	case remoting.RegisterBroker, remoting.UnregisterBroker:
		signed, ref := s.prove(c, req)
		if ref != nil {
			return s.refuse(c, req, ref)
		}
		if req.Code == remoting.RegisterBroker {
			return s.register(c, req, signed)
		}
		return s.unregister(c, req, signed)
	case remoting.GetRouteInfoByTopic:
		topic := req.Ext("topic")
		s.mu.Lock()
		rd, ok := s.reg.route(topic)
		s.mu.Unlock()
		if !ok {
			return req.Response(remoting.TopicNotExist, "No topic route info in name server for the topic: "+topic)
		}
		return req.JSONResponse(rd)
	case remoting.GetBrokerClusterInfo:
		s.mu.Lock()
		ci := s.reg.clusterInfo()
		s.mu.Unlock()
		return req.JSONResponse(ci)
	case remoting.GetAllTopicListFromNS:
		s.mu.Lock()
		topics := s.reg.topics()
		s.mu.Unlock()
		return req.JSONResponse(struct {
			TopicList []string `json:"topicList"`
		}{topics})
	default:
		return req.Response(remoting.RequestCodeNotSupported, fmt.Sprintf("request code %d not supported by the NameServer", req.Code))
	}
}

func (s *Server) unregister(c *remoting.Conn, req *remoting.Command, signed bool) *remoting.Command {
	b := Broker{Cluster: req.Ext("clusterName"), Name: req.Ext("brokerName"), Addr: req.Ext("brokerAddr"), ID: -1}
	if id, err := req.ExtInt("brokerId"); err == nil {
		b.ID = id
	}
	s.mu.Lock()
	ref := s.reg.admitUnregister(b, c, signed)
	gone := ref == nil && s.reg.unregister(b.Addr)
	s.mu.Unlock()
	if ref != nil {
		return s.refuse(c, req, ref)
	}
	if gone {
		s.opts.Logger.Info("namesrv: broker unregistered", "broker", b.Name, "addr", b.Addr, "signed", signed)
	}
	return req.Response(remoting.Success, "")
}

func (s *Server) register(c *remoting.Conn, req *remoting.Command, signed bool) *remoting.Command {
	id, err := req.ExtInt("brokerId")
	if err != nil {
		return req.Response(remoting.SystemError, err.Error())
	}
	b := Broker{Cluster: req.Ext("clusterName"), Name: req.Ext("brokerName"), ID: id, Addr: req.Ext("brokerAddr")}
	if b.Name == "" || b.Addr == "" {
		return req.Response(remoting.SystemError, "register broker: brokerName and brokerAddr are required")
	}
	if e := req.Ext("epoch"); e != "" {
		if b.Epoch, err = strconv.ParseInt(e, 10, 64); err != nil || b.Epoch < 0 {
			return req.Response(remoting.SystemError, fmt.Sprintf("register broker: epoch %q is not a number ≥ 0", e))
		}
	}
	if want := req.Ext("bodyCrc32"); want != "" && want != "0" {
		if got := strconv.FormatInt(int64(int32(crc32.ChecksumIEEE(req.Body))), 10); got != want {
			return req.Response(remoting.SystemError, fmt.Sprintf("register broker: body checksum %s, header says %s", got, want))
		}
	}
	if req.Ext("compressed") == "true" {
		return req.Response(remoting.SystemError, "register broker: compressed bodies are not supported")
	}
	var body registerBody
	if len(req.Body) > 0 {
		if err := json.Unmarshal(req.Body, &body); err != nil {
			return req.Response(remoting.SystemError, "register broker: body: "+err.Error())
		}
	}
	topics := make([]remoting.TopicConfig, 0, len(body.TopicConfigSerializeWrapper.TopicConfigTable))
	for name, tc := range body.TopicConfigSerializeWrapper.TopicConfigTable {
		tc.TopicName = name
		topics = append(topics, tc)
	}
	now := time.Now()
	s.mu.Lock()
	_, known := s.reg.brokers[b.Addr]
	ref := s.reg.admitRegister(b, topics, c, signed, now.Add(-s.opts.BrokerTimeout))
	if ref == nil {
		s.reg.register(b, topics, c, now)
	}
	s.mu.Unlock()
	if ref != nil {
		return s.refuse(c, req, ref)
	}
	if !known {
		s.opts.Logger.Info("namesrv: broker registered", "cluster", b.Cluster, "broker", b.Name, "id", b.ID, "addr", b.Addr, "topics", len(topics))
	}
	resp := req.Response(remoting.Success, "")
	resp.Set("haServerAddr", "")
	resp.Set("masterAddr", "")
	return resp
}

// RegisterRequest is the REGISTER_BROKER request a broker sends to every
// NameServer, at start and every 30 s, with all its topics.
func RegisterRequest(b Broker, topics []remoting.TopicConfig) (*remoting.Command, error) {
	var body registerBody
	body.TopicConfigSerializeWrapper.TopicConfigTable = make(map[string]remoting.TopicConfig, len(topics))
	for _, t := range topics {
		body.TopicConfigSerializeWrapper.TopicConfigTable[t.TopicName] = t
	}
	body.FilterServerList = []string{}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req := remoting.NewRequest(remoting.RegisterBroker, remoting.Pairs(
		"brokerName", b.Name,
		"brokerAddr", b.Addr,
		"clusterName", b.Cluster,
		"brokerId", strconv.FormatInt(b.ID, 10),
		"bodyCrc32", strconv.FormatInt(int64(int32(crc32.ChecksumIEEE(raw))), 10),
		"compressed", "false",
	), raw)
	if b.Epoch > 0 {
		req.Set("epoch", strconv.FormatInt(b.Epoch, 10))
	}
	return req, nil
}
