// Package native is the broker's native front-end: RocketMQ's remoting
// protocol (package remoting) served over core.Broker, so that RocketMQ's
// clients and Ferry's SDK produce and consume through Ferry. The broker
// registers with the NameServers (package cluster) at the address Addr
// gives. See docs/native.md.
package native

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/remoting"
)

// Options configure the front-end.
type Options struct {
	// MaxPollWait caps a pull's long poll (default 15 s).
	MaxPollWait time.Duration
	// Advertise is the host:port Addr gives, which the broker registers
	// with the NameServers and clients dial; "" gives the listen address
	// (an unspecified host as 127.0.0.1). A broker in a container
	// advertises its service name.
	Advertise string
	// Auth, when set, checks every request's credentials and topics
	// against the rules the MQTT front-end uses (see access.go).
	Auth *auth.Authenticator
	// Limits bound what clients can take (docs/native.md, "Limits"); zero
	// fields take remoting's defaults.
	Limits remoting.Limits
	Logger *slog.Logger
}

// Server serves the native protocol for one broker.
type Server struct {
	b    *core.Broker
	opts Options
	srv  *remoting.Server

	mu        sync.Mutex
	addr      string                               // the address registered: host:port clients reach
	storeHost [8]byte                              // addr as RocketMQ's 4-byte IP + 4-byte port
	clients   map[*remoting.Conn]map[string]string // conn → group → client id, for cleanup
	locks     lockTable

	access *access
	stats  requestStats
	timing *requestLatency
	sends  serverSends // the requests to the clients: notify's and checker's
	notify *notifier   // NOTIFY_CONSUMER_IDS_CHANGED to the clients

	producers producers // transaction.go: who a half message's check goes to
	checker   *checker  // CHECK_TRANSACTION_STATE to the producers

	routeWatchers []func()                        // OnRoutesChange's, under mu
	syncRoutes    func(ctx context.Context) error // SyncRoutesWith's, under mu
	once          sync.Once

	// sqlSubs are the SQL92 subscriptions of heartbeating groups, by
	// group and topic (sql92.go), under mu.
	sqlSubs map[string]map[string]route.Filter
}

// New makes the front-end over b.
func New(b *core.Broker, opts Options) *Server {
	if opts.MaxPollWait <= 0 {
		opts.MaxPollWait = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{b: b, opts: opts, clients: map[*remoting.Conn]map[string]string{},
		access: newAccess(opts.Auth), timing: newRequestLatency()}
	s.srv = remoting.NewServer(handler{s}, remoting.ServerOptions{Limits: opts.Limits, KeyPrefix: "native.", Logger: opts.Logger, OnClose: s.connClosed})
	s.notify = newNotifier(s.connsOf, &s.sends, opts.Logger)
	b.OnConsumersChange(s.notify.groupChanged)
	s.checker = &checker{s: s}
	b.OnTransactionCheck(s.checker.ask)
	return s
}

// connsOf lists the connections that heartbeated for group.
func (s *Server) connsOf(group string) []*remoting.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*remoting.Conn
	for c, groups := range s.clients {
		if _, ok := groups[group]; ok {
			out = append(out, c)
		}
	}
	return out
}

// OnRoutesChange calls fn (which must not block) when what the broker
// registers with the NameServers changes beyond the core's topics: the
// front-end's address is known (Serve), a consumer group appears (its
// retry topic becomes routable). The registrar (package cluster) listens.
func (s *Server) OnRoutesChange(fn func()) {
	s.mu.Lock()
	s.routeWatchers = append(s.routeWatchers, fn)
	s.mu.Unlock()
}

func (s *Server) routesChanged() {
	s.mu.Lock()
	fns := s.routeWatchers
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Serve serves on ln until Close; Addr is then the address ln listens on
// (an unspecified host as 127.0.0.1), or Options.Advertise.
func (s *Server) Serve(ln net.Listener) error {
	addr := ln.Addr().(*net.TCPAddr)
	ip, port := addr.IP.To4(), addr.Port
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1).To4()
	}
	advertised := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	if a := s.opts.Advertise; a != "" {
		advertised = a
		host, p, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(p); err == nil && perr == nil {
			port = n
			if ips, err := net.LookupIP(host); err == nil {
				for _, c := range ips {
					if c4 := c.To4(); c4 != nil {
						ip = c4 // the store host in message ids, where one resolves
						break
					}
				}
			}
		}
	}
	s.mu.Lock()
	s.addr = advertised
	copy(s.storeHost[:4], ip)
	binary.BigEndian.PutUint32(s.storeHost[4:], uint32(port))
	s.mu.Unlock()
	s.routesChanged()
	return s.srv.Serve(ln)
}

// ConnStats count the front-end's connections and the limits that closed
// some.
func (s *Server) ConnStats() remoting.ServerStats { return s.srv.Stats() }

// AcceptErr is why the listener fails to accept connections now, nil
// while it accepts them: a readiness check.
func (s *Server) AcceptErr() error { return s.srv.AcceptErr() }

// Close stops serving.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.srv.Close()
		s.notify.stop()
		s.sends.stop() // after the connections closed: no send is left blocked
	})
	return err
}

func (s *Server) host() [8]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeHost
}

// Addr is the address to register with the NameServers, which clients
// dial; "" until Serve.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// handle serves a request from whom it identifies, and counts it. A send
// is a batch of one: serveBatch identifies each of its requests.
func (s *Server) handle(ctx context.Context, c *remoting.Conn, req *remoting.Command) *remoting.Command {
	defer s.timing.observe(req, time.Now())
	var resp *remoting.Command
	if s.batches(req) {
		resp = s.serveBatch(ctx, c, []*remoting.Command{req})[0]
	} else if user, refused := s.access.identify(c, req); refused != nil {
		resp = refused
	} else {
		resp = s.serve(ctx, c, user, req)
	}
	s.stats.count(req, resp)
	return resp
}

// handler is the Server as the remoting server's BatchHandler.
type handler struct{ s *Server }

func (h handler) Serve(ctx context.Context, c *remoting.Conn, req *remoting.Command) *remoting.Command {
	return h.s.handle(ctx, c, req)
}

func (h handler) Batches(req *remoting.Command) bool { return h.s.batches(req) }

func (h handler) ServeBatch(ctx context.Context, c *remoting.Conn, reqs []*remoting.Command) []*remoting.Command {
	start := time.Now()
	resps := h.s.serveBatch(ctx, c, reqs)
	for i, resp := range resps {
		h.s.stats.count(reqs[i], resp)
		h.s.timing.observe(reqs[i], start) // each waited for the whole batch
	}
	return resps
}

// serve serves req, other than a send, from user (already identified),
// once authorize has allowed it.
func (s *Server) serve(ctx context.Context, c *remoting.Conn, user string, req *remoting.Command) *remoting.Command {
	if refused := s.authorize(user, req); refused != nil {
		return refused
	}
	switch req.Code {
	case remoting.PullMessage:
		return s.pull(ctx, user, req)
	case remoting.HeartBeat:
		return s.heartbeat(ctx, c, user, req)
	case remoting.UnregisterClient:
		s.unregisterClient(c, req.Ext("consumerGroup"), req.Ext("clientID"))
		return req.Response(remoting.Success, "")
	case remoting.GetConsumerListByGroup:
		return req.JSONResponse(struct {
			ConsumerIDList []string `json:"consumerIdList"`
		}{s.b.ConsumerIDs(req.Ext("consumerGroup"))})
	case remoting.QueryConsumerOffset:
		q, _ := strconv.Atoi(req.Ext("queueId"))
		off, ok := s.b.CommittedOffset(req.Ext("consumerGroup"), req.Ext("topic"), q)
		if !ok {
			return req.Response(remoting.QueryNotFound, "no committed offset for this group and queue")
		}
		return offsetResponse(req, off)
	case remoting.UpdateConsumerOffset:
		q, _ := strconv.Atoi(req.Ext("queueId"))
		off, err := req.ExtInt("commitOffset")
		if err != nil {
			return req.Response(remoting.SystemError, err.Error())
		}
		if err := s.b.CommitOffset(req.Ext("consumerGroup"), req.Ext("topic"), q, off); err != nil {
			return req.Response(remoting.SystemError, err.Error())
		}
		return req.Response(remoting.Success, "")
	case remoting.GetMaxOffset, remoting.GetMinOffset:
		q, _ := strconv.Atoi(req.Ext("queueId"))
		lo, hi := s.b.Offsets(req.Ext("topic"), q)
		if req.Code == remoting.GetMinOffset {
			return offsetResponse(req, lo)
		}
		return offsetResponse(req, hi)
	case remoting.SearchOffsetByTimestamp:
		q, _ := strconv.Atoi(req.Ext("queueId"))
		ms, err := req.ExtInt("timestamp")
		if err != nil {
			return req.Response(remoting.SystemError, err.Error())
		}
		off, err := s.b.OffsetForTime(req.Ext("topic"), q, time.UnixMilli(ms))
		if err != nil {
			return req.Response(remoting.SystemError, err.Error())
		}
		return offsetResponse(req, off)
	case remoting.ConsumerSendMsgBack:
		return s.sendBack(ctx, user, req)
	case remoting.LockBatchMQ, remoting.UnlockBatchMQ:
		return s.lockBatch(user, req)
	case remoting.ViewMessageByID:
		off, err := req.ExtInt("offset")
		if err != nil {
			return req.Response(remoting.SystemError, err.Error())
		}
		m, err := s.b.MessageAt(off)
		if err != nil {
			return req.Response(remoting.SystemError, fmt.Sprintf("no message at offset %d: %v", off, err))
		}
		s.describeHalf(&m)
		if refused := s.access.mayReadMessage(user, req, &m); refused != nil {
			return refused
		}
		resp := req.Response(remoting.Success, "")
		resp.Body = appendMessage(nil, &m, s.host())
		return resp
	case remoting.QueryMessage:
		return s.queryByKey(req)
	case remoting.EndTransaction:
		return s.endTransaction(ctx, user, req)
	case remoting.CheckClientConfig:
		return s.checkClientConfig(req)
	case remoting.GetAllSubscriptionGroupConfig: // Ferry's answer: the group names
		groups := []string{}
		for _, g := range s.b.Groups() {
			if s.access.seesGroup(user, g) {
				groups = append(groups, g)
			}
		}
		return req.JSONResponse(struct {
			Groups []string `json:"groups"`
		}{groups})
	case remoting.GetConsumeStats: // Ferry's answer: core.GroupInfo
		info, err := s.b.Group(req.Ext("consumerGroup"))
		if err != nil {
			return req.Response(remoting.SubscriptionGroupNotExist, err.Error())
		}
		return req.JSONResponse(info)
	case remoting.GetTopicStatsInfo: // Ferry's answer: core.TopicInfo
		info, err := s.b.Topic(req.Ext("topic"))
		if err != nil {
			return req.Response(remoting.TopicNotExist, err.Error())
		}
		return req.JSONResponse(info)
	case remoting.UpdateAndCreateTopic:
		n, _ := strconv.Atoi(req.Ext("writeQueueNums"))
		if _, err := s.b.CreateTopic(req.Ext("topic"), n); err != nil && !errors.Is(err, core.ErrTopicExists) {
			return req.Response(remoting.SystemError, err.Error())
		}
		return req.Response(remoting.Success, "") // a new topic: the core tells the registrar
	default:
		return req.Response(remoting.RequestCodeNotSupported, fmt.Sprintf("request code %d not supported by Ferry's broker", req.Code))
	}
}

// authorize checks the permission req needs from what its header names:
// the table in docs/auth.md, code by code. Permissions that depend on its
// body or on what it finds (a heartbeat's groups, a send-back's message,
// a pull's filter, the message a lookup returns) are checked where those
// are read; a send is checked by admitSend. A nil answer allows it.
func (s *Server) authorize(user string, req *remoting.Command) *remoting.Command {
	x := s.access
	if x.a == nil {
		return nil
	}
	group := req.Ext("consumerGroup")
	switch req.Code {
	case remoting.PullMessage:
		if refused := x.mayGroup(user, req, auth.GroupJoin, group); refused != nil {
			return refused
		}
		if sysFlag, _ := strconv.Atoi(req.Ext("sysFlag")); sysFlag&pullFlagCommitOffset != 0 {
			return x.mayGroup(user, req, auth.GroupCommit, group)
		}
		return nil // the subscription: in pull
	case remoting.HeartBeat, remoting.LockBatchMQ, remoting.UnlockBatchMQ, remoting.ViewMessageByID, remoting.EndTransaction:
		return nil // in heartbeat, lockBatch, and on the message found
	case remoting.UnregisterClient, remoting.GetConsumerListByGroup:
		return x.mayGroup(user, req, auth.GroupJoin, group)
	case remoting.QueryConsumerOffset:
		if refused := x.mayGroup(user, req, auth.GroupJoin, group); refused != nil {
			return refused
		}
		return x.mayReadSome(user, req, req.Ext("topic"))
	case remoting.UpdateConsumerOffset:
		if refused := x.mayGroup(user, req, auth.GroupCommit, group); refused != nil {
			return refused
		}
		return x.mayReadSome(user, req, req.Ext("topic"))
	case remoting.GetMaxOffset, remoting.GetMinOffset, remoting.SearchOffsetByTimestamp, remoting.GetTopicStatsInfo:
		return x.mayReadSome(user, req, req.Ext("topic"))
	case remoting.ConsumerSendMsgBack:
		return x.mayGroup(user, req, auth.GroupJoin, req.Ext("group")) // and the message: in sendBack
	case remoting.QueryMessage:
		return x.mayRead(user, req, req.Ext("topic"), route.Filter{})
	case remoting.GetAllSubscriptionGroupConfig:
		return nil // lists only the groups user holds a permission on
	case remoting.GetConsumeStats:
		if x.a.Admin(user) {
			return nil
		}
		return x.mayGroup(user, req, auth.GroupJoin, group)
	case remoting.UpdateAndCreateTopic:
		return x.mayAdminister(user, req, req.Ext("topic"))
	}
	return nil // not served: answered REQUEST_CODE_NOT_SUPPORTED
}

// The send header fields decodeSend reads, by index into sendFields: each
// with its SEND_MESSAGE name and its SEND_MESSAGE_V2 letter.
const (
	sfTopic = iota
	sfQueue
	sfSysFlag
	sfBorn
	sfFlag
	sfReconsume
	sfProperties
	sfBatch
	sfCreateQueues
	sendFieldCount
)

var sendFieldNames = [sendFieldCount][2]string{
	sfTopic: {"topic", "b"}, sfQueue: {"queueId", "e"}, sfSysFlag: {"sysFlag", "f"},
	sfBorn: {"bornTimestamp", "g"}, sfFlag: {"flag", "h"}, sfReconsume: {"reconsumeTimes", "j"},
	sfProperties: {"properties", "i"}, sfBatch: {"batch", "m"}, sfCreateQueues: {"defaultTopicQueueNums", "d"},
}

// sendFieldByLetter maps a SEND_MESSAGE_V2 letter onto its index into
// sendFields, plus one (0: not a field decodeSend reads).
var sendFieldByLetter = func() (t [256]uint8) {
	for i, n := range sendFieldNames {
		t[n[1][0]] = uint8(i + 1)
	}
	return t
}()

// sendFields reads every field decodeSend needs in one pass over the
// header: a name's last value counts, and SEND_MESSAGE_V2's letter wins
// over the full name. A letter (every field of a SEND_MESSAGE_V2) is
// found by table, not by comparing it with each name.
func sendFields(req *remoting.Command) [sendFieldCount]string {
	var long, short [sendFieldCount]string
	var hasShort [sendFieldCount]bool
	v2 := req.Code != remoting.SendMessage
	for _, f := range req.Fields {
		if len(f.Name) == 1 {
			if i := sendFieldByLetter[f.Name[0]]; v2 && i > 0 {
				short[i-1], hasShort[i-1] = f.Value, true
			}
			continue
		}
		for i, n := range sendFieldNames {
			if f.Name == n[0] {
				long[i] = f.Value
				break
			}
		}
	}
	for i := range long {
		if hasShort[i] {
			long[i] = short[i]
		}
	}
	return long
}

// batches says which requests serveBatch takes: sends.
func (s *Server) batches(req *remoting.Command) bool {
	switch req.Code {
	case remoting.SendMessage, remoting.SendMessageV2, remoting.SendBatchMessage:
		return true
	}
	return false
}

// serveBatch stores a run of sends that arrived together on one connection
// (or a single send) one after the other, without waiting for each to be
// durable, then waits once for all of them (one fsync with sync flush) and
// answers each.
func (s *Server) serveBatch(ctx context.Context, c *remoting.Conn, reqs []*remoting.Command) []*remoting.Command {
	resps := make([]*remoting.Command, len(reqs))
	results := make([][]core.PublishResult, len(reqs))
	room := make([]core.PublishResult, 0, len(reqs)) // the results of single sends, in one allocation
	var end int64
	var created string // a topic these sends created: its route is registered before the answers
	for i, req := range reqs {
		msgs, opts, half, refused := s.admitSend(c, req)
		if refused != nil {
			resps[i] = refused
			continue
		}
		if half { // waits for its own durability: transaction.go
			var made bool
			if resps[i], made = s.sendHalf(ctx, req, msgs, opts); made && created == "" {
				created = msgs[0].Topic
			}
			continue
		}
		opts.NoWait = true
		opts.Results = room[len(room):]
		res, err := s.b.PublishBatch(ctx, msgs, opts)
		if len(res) <= cap(room)-len(room) {
			room = room[:len(room)+len(res)] // res is in room: taken
		}
		if len(res) > 0 && res[0].Created && created == "" {
			created = msgs[0].Topic
		}
		if err != nil {
			resps[i] = req.Response(publishCode(err), err.Error())
			continue
		}
		if bodyCopied(res) {
			req.Release() // the next request's body is read into its memory
		}
		results[i] = res
		for _, r := range res {
			end = max(end, r.End)
		}
	}
	var werr error
	if end > 0 {
		werr = s.b.WaitDurable(ctx, end)
	}
	if created != "" && werr == nil && s.b.HasTopic(created) {
		s.awaitRoutes(ctx, "topic", created)
	}
	host := s.host() // once: it takes s.mu, which every heartbeat and pull takes too
	for i, res := range results {
		switch {
		case res == nil:
		case werr != nil:
			resps[i] = reqs[i].Response(remoting.SystemError, werr.Error())
		default:
			resps[i] = sendResponse(reqs[i], res, host)
		}
	}
	return resps
}

// bodyCopied reports whether a send stored as res left its request's body
// to no one: the store copied it, no live subscription took the message
// and the scheduler holds no copy waiting for its time.
func bodyCopied(res []core.PublishResult) bool {
	for _, r := range res {
		if r.Retained || r.Delayed {
			return false
		}
	}
	return len(res) > 0
}

// admitSend identifies a send's sender, decodes its messages and checks
// that the sender may publish them; a non-nil response refuses it.
func (s *Server) admitSend(c *remoting.Conn, req *remoting.Command) (msgs []*core.Message, opts core.PublishOptions, half bool, refused *remoting.Command) {
	user, refused := s.access.identify(c, req)
	if refused != nil {
		return nil, core.PublishOptions{}, false, refused
	}
	msgs, opts, half, refused = decodeSend(req)
	if refused == nil {
		refused = s.access.mayPublish(user, req, msgs)
	}
	return msgs, opts, half, refused
}

// decodeSend turns a send request into the messages to publish and how,
// and whether they are a transaction's half message (sysFlag); a non-nil
// response refuses the request.
func decodeSend(req *remoting.Command) ([]*core.Message, core.PublishOptions, bool, *remoting.Command) {
	h := sendFields(req)
	topic := h[sfTopic]
	queue, _ := strconv.Atoi(h[sfQueue])
	sysFlag, _ := strconv.Atoi(h[sfSysFlag])
	born, _ := strconv.ParseInt(h[sfBorn], 10, 64)
	flag, _ := strconv.Atoi(h[sfFlag])
	reconsume, _ := strconv.Atoi(h[sfReconsume])

	var msgs []*core.Message
	if req.Code == remoting.SendBatchMessage || h[sfBatch] == "true" {
		var err error
		if msgs, err = decodeBatch(topic, req.Body); err != nil {
			return nil, core.PublishOptions{}, false, req.Response(remoting.MessageIllegal, err.Error())
		}
	} else {
		body := req.Body
		if sysFlag&sysCompressed != 0 {
			var err error
			if body, err = inflate(body); err != nil {
				return nil, core.PublishOptions{}, false, req.Response(remoting.MessageIllegal, err.Error())
			}
		}
		one := new(sendOne)
		props := decodeProperties(h[sfProperties], one.props[:0])
		one.list[0] = toCore(&one.m, one.keys[:0], topic, int32(flag), props, body)
		msgs = one.list[:]
	}
	opts := core.PublishOptions{Queue: queue}
	opts.CreateQueues, _ = strconv.Atoi(h[sfCreateQueues]) // capped by the core
	for _, m := range msgs {
		m.BornTime = born * 1e6
		m.ReconsumeTimes = int32(reconsume)
		if d := m.Properties.Get(propDelay); d != "" {
			opts.DelayLevel, _ = strconv.Atoi(d)
			m.Properties.Del(propDelay)
		}
		if at := m.Properties.Get(propDeliverAt); at != "" { // any time, in unix ms
			if ms, err := strconv.ParseInt(at, 10, 64); err == nil {
				m.DeliverAt = ms * 1e6
			}
			m.Properties.Del(propDeliverAt)
		}
	}
	return msgs, opts, sysFlag&txMask == txPrepared, nil
}

// sendOne is a single send's message with the list that holds it and
// room for its key (the UNIQ_KEY) and a few properties: one allocation, not
// four.
type sendOne struct {
	m     core.Message
	list  [1]*core.Message
	keys  [1]string
	props [4]core.Property
}

// sendResponse answers a send whose messages were stored as res by the
// broker at storeHost. Its msgId is RocketMQ's offsetMsgId (the client's
// own id, UNIQ_KEY, is its SendResult.MsgID).
func sendResponse(req *remoting.Command, res []core.PublishResult, storeHost [8]byte) *remoting.Command {
	if len(res) == 1 {
		// The three values in one buffer beside the response: no
		// allocation of their own.
		resp, b := req.ResponseBuf(remoting.Success, "")
		b = appendOffsetMsgID(b, storeHost, res[0].LogOffset)
		id := len(b)
		b = strconv.AppendInt(b, int64(res[0].QueueID), 10)
		queue := len(b)
		b = strconv.AppendInt(b, res[0].QueueOffset, 10)
		all := unsafe.String(unsafe.SliceData(b), len(b))
		resp.Fields = append(resp.Fields, // within the room Response made: no allocation
			remoting.Field{Name: "msgId", Value: all[:id]},
			remoting.Field{Name: "queueId", Value: all[id:queue]},
			remoting.Field{Name: "queueOffset", Value: all[queue:]},
		)
		return resp
	}
	resp := req.Response(remoting.Success, "")
	// The ids appended into one buffer, comma separated: not a string
	// each and then their join.
	ids := make([]byte, 0, len(res)*(offsetMsgIDLen+1))
	for i, r := range res {
		if i > 0 {
			ids = append(ids, ',')
		}
		ids = appendOffsetMsgID(ids, storeHost, r.LogOffset)
	}
	resp.Fields = append(resp.Fields,
		remoting.Field{Name: "msgId", Value: unsafe.String(unsafe.SliceData(ids), len(ids))}, // ids is not written again
		remoting.Field{Name: "queueId", Value: strconv.Itoa(res[0].QueueID)},
		remoting.Field{Name: "queueOffset", Value: strconv.FormatInt(res[0].QueueOffset, 10)},
	)
	return resp
}

// publishCode maps a publish error onto RocketMQ's response codes.
func publishCode(err error) int16 {
	switch {
	case errors.Is(err, core.ErrUnknownTopic):
		return remoting.TopicNotExist
	case errors.Is(err, core.ErrMessageTooLarge), errors.Is(err, core.ErrInvalidMessage),
		errors.Is(err, core.ErrInvalidName), errors.Is(err, core.ErrInvalidQueue), errors.Is(err, core.ErrInvalidDelay):
		return remoting.MessageIllegal
	case errors.Is(err, core.ErrDiskFull), errors.Is(err, core.ErrFenced):
		return remoting.ServiceNotAvailable
	case errors.Is(err, core.ErrNotReplicated):
		return remoting.SlaveNotAvailable
	default:
		return remoting.SystemError
	}
}

// pullFlagCommitOffset: the pull carries the consumer's committed offset.
const pullFlagCommitOffset = 1 << 0

func (s *Server) pull(ctx context.Context, user string, req *remoting.Command) *remoting.Command {
	group, topic := req.Ext("consumerGroup"), req.Ext("topic")
	filter, err := s.pullFilter(req)
	if err != nil {
		return req.Response(remoting.SubscriptionParseFailed, err.Error())
	}
	if refused := s.access.mayRead(user, req, topic, filter); refused != nil {
		return refused
	}
	q, _ := strconv.Atoi(req.Ext("queueId"))
	offset, err := req.ExtInt("queueOffset")
	if err != nil {
		return req.Response(remoting.SystemError, err.Error())
	}
	maxMsgs, _ := strconv.Atoi(req.Ext("maxMsgNums"))
	sysFlag, _ := strconv.Atoi(req.Ext("sysFlag"))
	if sysFlag&pullFlagCommitOffset != 0 {
		if c, err := req.ExtInt("commitOffset"); err == nil && c >= 0 {
			s.b.CommitOffset(group, topic, q, c)
		}
	}
	wait := s.opts.MaxPollWait
	if ms, err := req.ExtInt("suspendTimeoutMillis"); err == nil && ms >= 0 {
		wait = min(wait, time.Duration(ms)*time.Millisecond)
	}
	// The read answers at once or when its poll ends; ctx is the
	// connection's: a pull whose connection is gone has no one to answer.
	var body []byte
	res, err := s.b.Read(ctx, topic, q, offset, core.ReadOptions{Max: maxMsgs, Filter: filter, Wait: wait,
		Use: func(r *core.ReadResult) { body = s.pullBody(r.Messages) }})
	switch {
	case err != nil && ctx.Err() != nil:
		return nil
	case errors.Is(err, core.ErrInvalidMessage):
		return req.Response(remoting.MessageIllegal, err.Error())
	case err != nil:
		return req.Response(remoting.SystemError, err.Error())
	case res.Moved:
		return pullResponse(req, remoting.PullOffsetMoved, res)
	case body != nil: // Use saw messages (which Read no longer returns)
		resp := pullResponse(req, remoting.Success, res)
		resp.GiveBody(body) // its memory serves later responses once written
		return resp
	}
	return pullResponse(req, remoting.PullNotFound, res) // nothing came, or all filtered out
}

// pullBody is a pull response's body: msgs in RocketMQ's stored layout.
// It is built within the read's turn (core.ReadOptions.Use), so that a
// client pipelining pulls cannot have hundreds of responses (4 MiB each at
// most) built at once.
func (s *Server) pullBody(msgs []core.Message) []byte {
	size := 0
	for i := range msgs {
		size += storedMessageSizeHint(&msgs[i])
	}
	body := remoting.BodyBuffer(size) // grown once at most, not doubled message by message
	host := s.host()
	for i := range msgs {
		body = appendMessage(body, &msgs[i], host)
	}
	return body
}

// pullResponse answers a pull with code and where res leaves the queue;
// without a body, which a successful pull gives it (GiveBody).
func pullResponse(req *remoting.Command, code int16, res core.ReadResult) *remoting.Command {
	resp := req.Response(code, "")
	resp.Fields = append(resp.Fields, // within the room Response made: no allocation
		remoting.Field{Name: "nextBeginOffset", Value: strconv.FormatInt(res.Next, 10)},
		remoting.Field{Name: "minOffset", Value: strconv.FormatInt(res.Min, 10)},
		remoting.Field{Name: "maxOffset", Value: strconv.FormatInt(res.Max, 10)},
		remoting.Field{Name: "suggestWhichBrokerId", Value: "0"},
	)
	return resp
}

func offsetResponse(req *remoting.Command, off int64) *remoting.Command {
	resp := req.Response(remoting.Success, "")
	resp.Set("offset", strconv.FormatInt(off, 10))
	return resp
}

// heartbeatBody is RocketMQ's HeartbeatData, the parts Ferry uses.
type heartbeatBody struct {
	ClientID        string `json:"clientID"`
	ProducerDataSet []struct {
		GroupName string `json:"groupName"`
	} `json:"producerDataSet"`
	ConsumerDataSet []struct {
		GroupName           string         `json:"groupName"`
		SubscriptionDataSet []heartbeatSub `json:"subscriptionDataSet"`
	} `json:"consumerDataSet"`
}

func (s *Server) heartbeat(ctx context.Context, c *remoting.Conn, user string, req *remoting.Command) *remoting.Command {
	var hb heartbeatBody
	if err := json.Unmarshal(req.Body, &hb); err != nil {
		return req.Response(remoting.SystemError, "heartbeat body: "+err.Error())
	}
	for _, cd := range hb.ConsumerDataSet { // all or none
		if refused := s.access.mayGroup(user, req, auth.GroupJoin, cd.GroupName); refused != nil {
			return refused
		}
	}
	producerGroups := make([]string, len(hb.ProducerDataSet))
	for i, pd := range hb.ProducerDataSet {
		producerGroups[i] = pd.GroupName
	}
	s.producers.heartbeat(c, user, producerGroups)
	newGroup := ""   // one the connection had not heartbeated for: its retry route is registered before the answer
	var badSub error // the first group whose subscription does not parse; it is left out
	for _, cd := range hb.ConsumerDataSet {
		sqlSubs, err := sqlSubscriptions(cd.GroupName, cd.SubscriptionDataSet)
		if err != nil {
			badSub = cmp.Or(badSub, err)
			continue
		}
		s.setSQLSubscriptions(cd.GroupName, sqlSubs)
		var topics []string
		for _, sd := range cd.SubscriptionDataSet {
			topics = append(topics, sd.Topic)
		}
		if err := s.b.ClientHeartbeat(cd.GroupName, hb.ClientID, topics); err != nil {
			return req.Response(remoting.SystemError, err.Error())
		}
		s.mu.Lock()
		if s.clients[c] == nil {
			s.clients[c] = map[string]string{}
		}
		_, known := s.clients[c][cd.GroupName]
		s.clients[c][cd.GroupName] = hb.ClientID
		s.mu.Unlock()
		if !known {
			s.routesChanged() // the group's retry topic becomes routable
			newGroup = cd.GroupName
		}
	}
	if newGroup != "" {
		s.awaitRoutes(ctx, "group", newGroup)
	}
	if badSub != nil {
		return req.Response(remoting.SubscriptionParseFailed, badSub.Error())
	}
	return req.Response(remoting.Success, "")
}

func (s *Server) connClosed(c *remoting.Conn) {
	s.access.forget(c)
	s.producers.forget(c)
	s.mu.Lock()
	groups := s.clients[c]
	delete(s.clients, c)
	s.forgetSQLSubscriptions(groups)
	s.mu.Unlock()
	for g, id := range groups {
		s.b.ClientGone(g, id)
	}
}

// unregisterClient drops a client from a group, if c is the connection
// that heartbeated for it: no connection drops another's clients.
func (s *Server) unregisterClient(c *remoting.Conn, group, id string) {
	s.mu.Lock()
	mine := s.clients[c][group] == id
	if mine {
		delete(s.clients[c], group)
		s.forgetSQLSubscriptions(map[string]string{group: id})
	}
	s.mu.Unlock()
	if mine {
		s.b.ClientGone(group, id)
	}
}

// sendBack serves CONSUMER_SEND_MSG_BACK: a member of the group (its join
// permission, checked by authorize) gives back a message it could read.
// The message is checked as it is read, so no other can be copied into
// the group's retry topic, where its members would read it.
func (s *Server) sendBack(ctx context.Context, user string, req *remoting.Command) *remoting.Command {
	off, err := req.ExtInt("offset")
	if err != nil {
		return req.Response(remoting.SystemError, err.Error())
	}
	level, _ := strconv.Atoi(req.Ext("delayLevel"))
	maxRetries, _ := strconv.Atoi(req.Ext("maxReconsumeTimes"))
	var refused *remoting.Command
	allow := func(m *core.Message) error {
		if refused = s.access.mayReadMessage(user, req, m); refused != nil {
			return errRefused
		}
		return nil
	}
	if err := s.b.SendBack(ctx, req.Ext("group"), off, level, maxRetries, allow); err != nil {
		if refused != nil {
			return refused
		}
		return req.Response(remoting.SystemError, err.Error())
	}
	return req.Response(remoting.Success, "")
}

// errRefused stops a core operation whose check refused it.
var errRefused = errors.New("native: refused")
