package native

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/namesrv"
	"github.com/ferrymq/ferry/remoting"
)

// defaultTopic is RocketMQ's TBW102: clients that publish to a topic no
// NameServer knows use its route, and the broker creates the topic.
const defaultTopic = "TBW102"

// registerLoop registers with every NameServer now and every
// RegisterInterval; registerAll also runs when topics or groups change.
func (s *Server) registerLoop() {
	defer s.wg.Done()
	conns := map[string]*remoting.Client{}
	refusals := map[string]refusalLogged{}
	defer func() {
		for _, c := range conns {
			c.Close() // the NameServers drop this broker at once
		}
	}()
	tick := time.NewTicker(s.opts.RegisterInterval)
	defer tick.Stop()
	for {
		s.registerWith(conns, refusals)
		select {
		case <-s.stop:
			return
		case <-tick.C:
		case <-s.kick:
		}
	}
}

// registerAll asks the register loop for a registration now.
func (s *Server) registerAll() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Server) registerWith(conns map[string]*remoting.Client, refusals map[string]refusalLogged) {
	req, err := namesrv.RegisterRequest(namesrv.Broker{Cluster: s.opts.Cluster, Name: s.opts.BrokerName, ID: 0, Addr: s.Addr()}, s.topicConfigs())
	if err != nil {
		s.opts.Logger.Error("native: build registration", "err", err)
		return
	}
	for _, addr := range s.opts.NameServers {
		c := conns[addr]
		if c == nil || c.Err() != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			c, err = remoting.Dial(ctx, addr)
			cancel()
			if err != nil {
				s.opts.Logger.Warn("native: NameServer unreachable; retrying at the next registration", "namesrv", addr, "err", err)
				continue
			}
			conns[addr] = c
		}
		r := cloneRequest(req)
		if k := s.opts.ClusterKey; k != nil {
			if err := k.Sign(r, time.Now()); err != nil {
				s.opts.Logger.Error("native: sign registration", "err", err)
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := c.Invoke(ctx, r)
		cancel()
		if err == nil {
			err = remoting.ResponseError(resp)
		}
		switch {
		case err == nil:
			delete(refusals, addr)
		case errors.Is(err, remoting.ErrNoPermission):
			// Refused: the secret differs, or another broker holds this
			// broker's name. Said at ERROR, once per register interval
			// (registrations also run when topics change).
			if last, ok := refusals[addr]; !ok || last.remark != resp.Remark || time.Since(last.at) >= s.opts.RegisterInterval {
				s.opts.Logger.Error("native: the NameServer refused this broker's registration: clients cannot reach it through that NameServer; retrying",
					"namesrv", addr, "broker", s.opts.BrokerName, "signed", s.opts.ClusterKey != nil, "retry_every", s.opts.RegisterInterval, "err", err)
				refusals[addr] = refusalLogged{remark: resp.Remark, at: time.Now()}
			}
		default:
			s.opts.Logger.Warn("native: registration failed", "namesrv", addr, "err", err)
		}
	}
}

// refusalLogged is the last refusal logged for a NameServer.
type refusalLogged struct {
	remark string
	at     time.Time
}

// cloneRequest copies c with its own ext fields, which signing changes.
func cloneRequest(c *remoting.Command) *remoting.Command {
	cp := *c
	cp.ExtFields = maps.Clone(c.ExtFields)
	return &cp
}

// topicConfigs is what the broker serves: its topics, the retry topics of
// the groups it has seen, and TBW102 when topics are created on publish.
func (s *Server) topicConfigs() []remoting.TopicConfig {
	const perm = remoting.PermRead | remoting.PermWrite
	var out []remoting.TopicConfig
	for _, t := range s.b.Topics() {
		out = append(out, remoting.TopicConfig{TopicName: t.Name, ReadQueueNums: t.Queues, WriteQueueNums: t.Queues, Perm: perm})
	}
	s.mu.Lock()
	groups := map[string]bool{}
	for _, gs := range s.clients {
		for g := range gs {
			groups[g] = true
		}
	}
	s.mu.Unlock()
	for g := range groups {
		out = append(out, remoting.TopicConfig{TopicName: core.RetryTopic(g), ReadQueueNums: 1, WriteQueueNums: 1, Perm: perm})
	}
	if s.b.AutoCreatesTopics() {
		n := s.b.DefaultQueues()
		out = append(out, remoting.TopicConfig{TopicName: defaultTopic, ReadQueueNums: n, WriteQueueNums: n, Perm: perm})
	}
	return out
}
