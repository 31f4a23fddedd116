package native

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/remoting"
)

// RocketMQ's transaction bits of a send's sysFlag and of END_TRANSACTION's
// commitOrRollback (MessageSysFlag).
const (
	txMask     = 0xC
	txPrepared = 0x4
	txCommit   = 0x8
	txRollback = 0xC
)

// sendHalf stores a half message (core.PublishHalf) and answers as a send
// does, with transactionId (its UNIQ_KEY) too, and says whether it created
// the topic. A batch cannot be one.
func (s *Server) sendHalf(ctx context.Context, req *remoting.Command, msgs []*core.Message, opts core.PublishOptions) (resp *remoting.Command, created bool) {
	if len(msgs) != 1 {
		return req.Response(remoting.MessageIllegal, "native: a transactional message cannot be sent in a batch"), false
	}
	res, err := s.b.PublishHalf(ctx, msgs[0], opts)
	switch {
	case errors.Is(err, core.ErrInvalidTransaction):
		return req.Response(remoting.MessageIllegal, err.Error()), false
	case err != nil:
		return req.Response(publishCode(err), err.Error()), false
	}
	resp = sendResponse(req, []core.PublishResult{res}, s.host())
	resp.Set("transactionId", msgs[0].Properties.Get(propUniqKey))
	return resp, res.Created
}

// endTransaction serves END_TRANSACTION (one-way from RocketMQ's clients,
// answered when sent two-way): commit or roll back the half message the
// header names by commitLogOffset (its msgId, the UNIQ_KEY, when no half
// message is pending there). It needs write on the real topic, checked on
// the half message found. Unknown (commitOrRollback 0) leaves it to the
// checks.
func (s *Server) endTransaction(ctx context.Context, user string, req *remoting.Command) *remoting.Command {
	var commit bool
	switch v, _ := strconv.Atoi(req.Ext("commitOrRollback")); v {
	case txCommit:
		commit = true
	case txRollback:
	default:
		return req.Response(remoting.Success, "") // unknown: the broker checks later
	}
	off, err := req.ExtInt("commitLogOffset")
	if err != nil {
		off = -1
	}
	e := core.EndTransaction{Group: req.Ext("producerGroup"), LogOffset: off, Key: req.Ext("msgId"), Commit: commit}
	var refused *remoting.Command
	allow := func(m *core.Message) error {
		if refused = s.access.mayPublish(user, req, []*core.Message{m}); refused != nil {
			return errRefused
		}
		return nil
	}
	if err := s.b.EndTransaction(ctx, e, allow); err != nil {
		if refused != nil {
			s.opts.Logger.Warn("native: transaction end refused", "group", e.Group, "user", user, "why", refused.Remark)
			return refused
		}
		level := slog.LevelWarn
		if errors.Is(err, core.ErrUnknownTransaction) && req.Ext("fromTransactionCheck") == "true" {
			level = slog.LevelDebug // a check's answer after the producer's own end
		}
		s.opts.Logger.Log(ctx, level, "native: transaction end not applied", "group", e.Group, "commit", commit, "err", err)
		return req.Response(remoting.SystemError, err.Error())
	}
	return req.Response(remoting.Success, "")
}

// propTranState, on a half message VIEW_MESSAGE_BY_ID returns, says where
// its transaction is: "pending: N of MAX checks, next at TIME" or
// "resolved" (committed, rolled back or discarded).
const propTranState = "TRAN_STATE"

// describeHalf adds its transaction's state to m if it is a half message.
func (s *Server) describeHalf(m *core.Message) {
	if !core.IsHalfTopic(m.Topic) {
		return
	}
	st := s.b.TransactionState(m.LogOffset)
	state := "resolved"
	if st.Pending {
		state = "pending: " + strconv.Itoa(st.Checks) + " checks made, next at " + st.Next.UTC().Format(time.RFC3339)
	}
	props := m.Properties.Clone(1)
	props.Set(propTranState, state)
	m.Properties = props
}

// producer is a connection that heartbeated as a producer.
type producer struct {
	user   string
	groups map[string]bool
}

// producers are the connections that heartbeated for producer groups:
// those a check of a half message is sent to.
type producers struct {
	mu    sync.Mutex
	conns map[*remoting.Conn]*producer
}

func (p *producers) heartbeat(c *remoting.Conn, user string, groups []string) {
	if len(groups) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns = map[*remoting.Conn]*producer{}
	}
	pr := &producer{user: user, groups: make(map[string]bool, len(groups))}
	for _, g := range groups {
		pr.groups[g] = true
	}
	p.conns[c] = pr
}

func (p *producers) forget(c *remoting.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// of lists the connections of group's producers and their users.
func (p *producers) of(group string) (conns []*remoting.Conn, users []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, pr := range p.conns {
		if pr.groups[group] {
			conns = append(conns, c)
			users = append(users, pr.user)
		}
	}
	return conns, users
}

// checker sends CHECK_TRANSACTION_STATE (code 39, one-way) for the core's
// checks to a live producer of the half message's group, as RocketMQ's
// brokers do: header tranStateTableOffset, commitLogOffset, msgId,
// transactionId, offsetMsgId; body the half message in the stored
// layout, its real topic and queue restored. The producer answers with
// END_TRANSACTION (fromTransactionCheck=true).
//
// The sends are s.sends' (one per connection at a time): a check for a
// connection still writing goes to another producer of the group, or is
// not sent (the core checks again at its next interval).
type checker struct {
	s    *Server
	next atomic.Uint32 // round robin over a group's producers
}

// ask is the core's OnTransactionCheck callback: it never blocks.
func (k *checker) ask(chk core.TransactionCheck) bool {
	s := k.s
	conns, users := s.producers.of(chk.Group)
	if len(conns) == 0 {
		return false
	}
	m := &chk.Message
	host := s.host()
	start := int(k.next.Add(1))
	for i := range conns {
		j := (start + i) % len(conns)
		c := conns[j]
		if s.sends.sending(c) {
			continue
		}
		// The check carries the message: only a producer that may write
		// it sees it.
		if a := s.access.a; a != nil && !a.Allow(users[j], "", auth.Write, path(m.Topic, m.Subject)) {
			continue
		}
		uniq := m.Properties.Get(propUniqKey)
		req := s.sends.oneway(remoting.CheckTransactionState, remoting.Pairs(
			"tranStateTableOffset", strconv.FormatInt(m.QueueOffset, 10),
			"commitLogOffset", strconv.FormatInt(m.LogOffset, 10),
			"msgId", uniq,
			"transactionId", uniq,
			"offsetMsgId", offsetMsgID(host, m.LogOffset),
		), appendMessage(nil, m, host))
		failed := func(err error) {
			s.opts.Logger.Debug("native: transaction check not sent", "remote", c.RemoteAddr(), "group", chk.Group, "err", err)
		}
		if s.sends.send(c, []*remoting.Command{req}, failed) {
			return true
		}
	}
	return false
}
