package native

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/internal/authtest"
	"github.com/ferrymq/ferry/remoting"
)

// twoUsers is the README's rules with groups: alice reads and writes
// devices/# and consumes as group alice-ops; bob has bobtopic/# and bob-g;
// carol reads every topic and has carol-g; root is an administrator.
const twoUsers = `user alice
topic readwrite devices/#
group alice-ops

user bob
topic readwrite bobtopic/#
group bob-g

user carol
topic read #
group carol-g

user root
admin
`

// authzFixture is a broker with those rules, one client connection per
// user, and one message of alice's stored at devices/42/secret.
type authzFixture struct {
	t        *testing.T
	s        *Server
	alice    *remoting.Client
	bob      *remoting.Client
	aliceOff int64 // the commit-log offset of alice's message
}

func newAuthzFixture(t *testing.T) *authzFixture {
	a := authtest.New(t, testPasswords, twoUsers)
	s, alice := startServer(t, a)
	bob, err := remoting.Dial(context.Background(), s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bob.Close() })
	f := &authzFixture{t: t, s: s, alice: alice, bob: bob}
	resp := f.ok(alice, "alice", sendV2("devices", "42/secret", []byte("alice's secret"), 0))
	f.aliceOff = readOne(t, s, "devices", mustAtoi(t, resp.Ext("queueId"))).LogOffset
	return f
}

// readOne waits for the first message of a queue to be indexed.
func readOne(t *testing.T, s *Server, topic string, queue int) core.Message {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		res, err := s.b.Read(t.Context(), topic, queue, 0, core.ReadOptions{Max: 1})
		if err == nil && len(res.Messages) == 1 {
			return res.Messages[0]
		}
	}
	t.Fatalf("no message in %s queue %d", topic, queue)
	return core.Message{}
}

// as signs req as user, as the SDK does.
func as(user string, req *remoting.Command) *remoting.Command {
	req.Sign(user, signingKey(user), time.Now())
	return req
}

var signingKeys sync.Map // user → its signing key: each costs a scrypt

func signingKey(user string) []byte {
	if k, ok := signingKeys.Load(user); ok {
		return k.([]byte)
	}
	k := []byte(remoting.SigningKey(user, testPasswords[user]))
	signingKeys.Store(user, k)
	return k
}

var testPasswords = map[string]string{"alice": "a-secret", "bob": "b-secret", "carol": "c-secret", "dave": "d-secret", "root": "r-secret"}

func (f *authzFixture) ok(c *remoting.Client, user string, req *remoting.Command) *remoting.Command {
	f.t.Helper()
	resp := call(f.t, c, as(user, req))
	if resp.Code != remoting.Success && resp.Code != remoting.PullNotFound && resp.Code != remoting.QueryNotFound {
		f.t.Fatalf("%s: code %d %q, want success", requestName(req.Code), resp.Code, resp.Remark)
	}
	return resp
}

func (f *authzFixture) refused(c *remoting.Client, user string, req *remoting.Command, why string) {
	f.t.Helper()
	resp := call(f.t, c, as(user, req))
	if resp.Code != remoting.NoPermission || !strings.Contains(resp.Remark, why) {
		f.t.Fatalf("%s: code %d %q, want NO_PERMISSION saying %q", requestName(req.Code), resp.Code, resp.Remark, why)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pullReq(group, topic string, queue int, sub string) *remoting.Command {
	return remoting.NewRequest(remoting.PullMessage, remoting.Pairs(
		"consumerGroup", group, "topic", topic, "queueId", strconv.Itoa(queue), "queueOffset", "0",
		"maxMsgNums", "32", "sysFlag", "0", "suspendTimeoutMillis", "0", "subscription", sub,
	), nil)
}

func sendBackReq(group string, off int64) *remoting.Command {
	return remoting.NewRequest(remoting.ConsumerSendMsgBack, remoting.Pairs(
		"group", group, "offset", strconv.FormatInt(off, 10), "delayLevel", "-1", "maxReconsumeTimes", "1",
	), nil)
}

// TestSendBackReadsNothingOfOthers: bob cannot copy alice's message into
// his group's retry or dead-letter topic, nor read hers.
func TestSendBackReadsNothingOfOthers(t *testing.T) {
	f := newAuthzFixture(t)
	// The hole: bob's own group, alice's offset.
	f.refused(f.bob, "bob", sendBackReq("bob-g", f.aliceOff), "read devices/42/secret")
	f.refused(f.bob, "bob", sendBackReq("alice-ops", f.aliceOff), "join group alice-ops")
	for _, topic := range []string{core.RetryTopic("bob-g"), core.DeadLetterTopic("bob-g")} {
		for q := range 8 {
			resp := f.ok(f.bob, "bob", pullReq("bob-g", topic, q, "*"))
			if len(resp.Body) > 0 {
				t.Fatalf("bob pulled %d bytes from %s", len(resp.Body), topic)
			}
		}
	}
	// Alice gives her message back to her group, to its dead-letter topic
	// (delay level -1): now it is in alice-ops's internal topics.
	f.ok(f.alice, "alice", sendBackReq("alice-ops", f.aliceOff))
	dlq := core.DeadLetterTopic("alice-ops")
	// carol reads # by the topic rules, but an internal topic is the group's.
	for _, u := range []string{"bob", "carol"} {
		f.refused(f.bob, u, pullReq(u+"-g", dlq, 0, "*"), "join group alice-ops")
		f.refused(f.bob, u, pullReq(u+"-g", core.RetryTopic("alice-ops"), 0, "*"), "join group alice-ops")
		f.refused(f.bob, u, remoting.NewRequest(remoting.QueryMessage, remoting.Pairs("topic", dlq, "key", "k", "maxNum", "8"), nil), "join group alice-ops")
		f.refused(f.bob, u, remoting.NewRequest(remoting.GetMaxOffset, remoting.Pairs("topic", dlq, "queueId", "0"), nil), "join group alice-ops")
		f.refused(f.bob, u, sendV2(core.RetryTopic("alice-ops"), "x", []byte("injected"), 0), "join group alice-ops")
	}
	f.refused(f.bob, "bob", sendV2("devices", "42/cmd", []byte("x"), 0), "publish to devices/42/cmd")

	// Found by offset: the dead letter is refused to bob, given to alice.
	dead := readOne(t, f.s, dlq, 0)
	view := func() *remoting.Command {
		return remoting.NewRequest(remoting.ViewMessageByID, remoting.Pairs("offset", strconv.FormatInt(dead.LogOffset, 10)), nil)
	}
	f.refused(f.bob, "bob", view(), "join group alice-ops")
	f.refused(f.bob, "carol", view(), "join group alice-ops")
	if got := decodeStored(t, f.ok(f.alice, "alice", view()).Body); len(got) != 1 || string(got[0].body) != "alice's secret" {
		t.Fatalf("alice views her dead letter: %+v", got)
	}
	if resp := f.ok(f.alice, "alice", pullReq("alice-ops", dlq, 0, "*")); len(decodeStored(t, resp.Body)) != 1 {
		t.Fatal("alice pulls her group's dead letter")
	}
}

// TestGroupRequestsNeedTheGroup: bob cannot move, join, lock or read the
// state of alice's group; each refusal is counted.
func TestGroupRequestsNeedTheGroup(t *testing.T) {
	f := newAuthzFixture(t)
	commit := func(group string, off int) *remoting.Command {
		return remoting.NewRequest(remoting.UpdateConsumerOffset, remoting.Pairs(
			"consumerGroup", group, "topic", "devices", "queueId", "0", "commitOffset", strconv.Itoa(off)), nil)
	}
	queryOffset := func(group string) *remoting.Command {
		return remoting.NewRequest(remoting.QueryConsumerOffset, remoting.Pairs("consumerGroup", group, "topic", "devices", "queueId", "0"), nil)
	}
	hb := func(group, id string) *remoting.Command {
		return remoting.NewRequest(remoting.HeartBeat, nil, []byte(`{"clientID":"`+id+`","consumerDataSet":[{"groupName":"`+group+`","subscriptionDataSet":[{"topic":"devices"}]}]}`))
	}
	members := func(group string) *remoting.Command {
		return remoting.NewRequest(remoting.GetConsumerListByGroup, remoting.Pairs("consumerGroup", group), nil)
	}
	lock := func(code int16, group, id string) *remoting.Command {
		body, _ := json.Marshal(lockBody{ConsumerGroup: group, ClientID: id, MQSet: []messageQueue{{Topic: "devices", QueueID: 0}}})
		return remoting.NewRequest(code, nil, body)
	}

	f.ok(f.alice, "alice", commit("alice-ops", 1))
	f.ok(f.alice, "alice", hb("alice-ops", "alice-1"))
	if resp := f.ok(f.alice, "alice", lock(remoting.LockBatchMQ, "alice-ops", "alice-1")); !strings.Contains(string(resp.Body), `"queueId":0`) {
		t.Fatalf("alice locks her queue: %s", resp.Body)
	}

	f.refused(f.bob, "bob", commit("alice-ops", 1000000), "commit group alice-ops")
	f.refused(f.bob, "bob", queryOffset("alice-ops"), "join group alice-ops")
	f.refused(f.bob, "bob", hb("alice-ops", "bob-1"), "join group alice-ops")
	f.refused(f.bob, "bob", members("alice-ops"), "join group alice-ops")
	f.refused(f.bob, "bob", lock(remoting.LockBatchMQ, "alice-ops", "bob-1"), "lock group alice-ops")
	f.refused(f.bob, "bob", lock(remoting.UnlockBatchMQ, "alice-ops", "alice-1"), "lock group alice-ops")
	f.refused(f.bob, "bob", remoting.NewRequest(remoting.UnregisterClient, remoting.Pairs("consumerGroup", "alice-ops", "clientID", "alice-1"), nil), "join group alice-ops")
	f.refused(f.bob, "bob", remoting.NewRequest(remoting.GetConsumeStats, remoting.Pairs("consumerGroup", "alice-ops"), nil), "join group alice-ops")
	f.refused(f.bob, "bob", pullReq("alice-ops", "bobtopic", 0, "*"), "join group alice-ops")
	f.refused(f.bob, "bob", remoting.NewRequest(remoting.UpdateAndCreateTopic, remoting.Pairs("topic", "devices", "writeQueueNums", "2"), nil), "create or change topic devices")

	// Nothing moved: alice's offset, membership and lock are hers.
	if resp := f.ok(f.alice, "alice", queryOffset("alice-ops")); resp.Ext("offset") != "1" {
		t.Fatalf("alice's committed offset is %s, want 1", resp.Ext("offset"))
	}
	if resp := f.ok(f.alice, "alice", members("alice-ops")); string(resp.Body) != `{"consumerIdList":["alice-1"]}` {
		t.Fatalf("alice's group members: %s", resp.Body)
	}
	if resp := f.ok(f.alice, "alice", lock(remoting.LockBatchMQ, "alice-ops", "alice-1")); !strings.Contains(string(resp.Body), `"queueId":0`) {
		t.Fatalf("alice still holds her lock: %s", resp.Body)
	}
	// A client id is dropped only by the connection that heartbeated it,
	// even within the group.
	f.ok(f.bob, "alice", remoting.NewRequest(remoting.UnregisterClient, remoting.Pairs("consumerGroup", "alice-ops", "clientID", "alice-1"), nil))
	if resp := f.ok(f.alice, "alice", members("alice-ops")); string(resp.Body) != `{"consumerIdList":["alice-1"]}` {
		t.Fatalf("another connection unregistered alice-1: %s", resp.Body)
	}

	// Group listing shows each user their own; an admin sees all.
	list := func(c *remoting.Client, user string) string {
		return string(f.ok(c, user, remoting.NewRequest(remoting.GetAllSubscriptionGroupConfig, nil, nil)).Body)
	}
	if got := list(f.bob, "bob"); strings.Contains(got, "alice-ops") {
		t.Fatalf("bob's group list shows alice's group: %s", got)
	}
	if got := list(f.bob, "root"); !strings.Contains(got, "alice-ops") {
		t.Fatalf("root's group list: %s", got)
	}
	f.ok(f.bob, "root", remoting.NewRequest(remoting.GetConsumeStats, remoting.Pairs("consumerGroup", "alice-ops"), nil))

	var n int64
	f.s.access.refused.each(func(code int16, perm string, c int64) {
		if code == remoting.UpdateConsumerOffset && perm == "group_commit" {
			n += c
		}
	})
	if n != 1 {
		t.Fatalf("refused commits counted %d, want 1", n)
	}
}

// TestEveryRequestIsAuthorised: a user with no rule at all is refused
// every request the broker serves, but the group list (which shows only
// the client's own groups, here none).
func TestEveryRequestIsAuthorised(t *testing.T) {
	f := newAuthzFixture(t)
	off := strconv.FormatInt(f.aliceOff, 10)
	half, err := f.s.b.PublishHalf(context.Background(), &core.Message{Topic: "devices", Body: []byte("h"),
		Properties: core.PropertiesOf(map[string]string{"PGROUP": "pg"})}, core.PublishOptions{Queue: core.QueueAuto})
	if err != nil {
		t.Fatal(err)
	}
	ext := remoting.Pairs(
		"commitLogOffset", strconv.FormatInt(half.LogOffset, 10), "commitOrRollback", strconv.Itoa(txCommit),
		"consumerGroup", "alice-ops", "group", "alice-ops", "topic", "devices", "queueId", "0", "queueOffset", "0",
		"commitOffset", "5", "offset", off, "timestamp", "0", "key", "k", "maxNum", "1", "subscription", "*",
		"suspendTimeoutMillis", "0", "maxMsgNums", "1", "sysFlag", "0", "clientID", "c", "writeQueueNums", "1",
		"b", "devices", "delayLevel", "0",
	)
	bodies := map[int16]string{
		remoting.HeartBeat:        `{"clientID":"c","consumerDataSet":[{"groupName":"alice-ops"}]}`,
		remoting.LockBatchMQ:      `{"consumerGroup":"alice-ops","clientId":"c","mqSet":[{"topic":"devices","queueId":0}]}`,
		remoting.UnlockBatchMQ:    `{"consumerGroup":"alice-ops","clientId":"c","mqSet":[{"topic":"devices","queueId":0}]}`,
		remoting.SendMessage:      "x",
		remoting.SendMessageV2:    "x",
		remoting.SendBatchMessage: "\x00\x00\x00\x17" + strings.Repeat("\x00", 12) + "\x00\x00\x00\x01x\x00\x00", // one message, "x"
	}
	for _, k := range requestKinds[1:] {
		req := remoting.NewRequest(k.code, slices.Clone(ext), []byte(bodies[k.code])) // signing changes the fields
		resp := call(t, f.bob, as("dave", req))
		switch {
		case k.code == remoting.GetAllSubscriptionGroupConfig:
			if resp.Code != remoting.Success || string(resp.Body) != `{"groups":[]}` {
				t.Errorf("%s: code %d %s, want an empty list", k.name, resp.Code, resp.Body)
			}
		case resp.Code != remoting.NoPermission:
			t.Errorf("%s: code %d %q, want NO_PERMISSION", k.name, resp.Code, resp.Remark)
		}
	}
}
