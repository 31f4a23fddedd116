package native

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/internal/authtest"
	"github.com/ferrymq/ferry/remoting"
)

// sendProps sends body to queue 0 of topic with user properties.
func sendProps(t *testing.T, c *remoting.Client, topic string, body string, props map[string]string) {
	t.Helper()
	p := map[string]string{"TAGS": "tag"}
	for k, v := range props {
		p[k] = v
	}
	resp := call(t, c, remoting.NewRequest(remoting.SendMessageV2, remoting.Pairs(
		"a", "pg", "b", topic, "e", "0", "f", "0", "g", "1700000000000", "h", "0",
		"i", string(remoting.EncodeProperties(p)), "j", "0",
	), []byte(body)))
	if resp.Code != remoting.Success {
		t.Fatalf("send: %v", resp)
	}
}

func heartbeatSQL(group, topic, expr string) *remoting.Command {
	body, _ := json.Marshal(map[string]any{"clientID": "c1", "consumerDataSet": []any{map[string]any{
		"groupName": group, "subscriptionDataSet": []any{
			map[string]any{"topic": topic, "subString": expr, "expressionType": "SQL92"},
			map[string]any{"topic": "%RETRY%" + group, "subString": "*", "expressionType": "TAG"},
		}}}})
	return remoting.NewRequest(remoting.HeartBeat, nil, body)
}

// TestSQL92Pull: a SQL92 subscription filters pulls at the broker, whether
// the pull carries it or the group's heartbeat did (RocketMQ's Go client
// pulls with no subscription, typed TAG); a bad one is refused, with its
// position, at the heartbeat, the pull and CHECK_CLIENT_CONFIG.
func TestSQL92Pull(t *testing.T) {
	b, c := start(t)
	for i := range 10 {
		sendProps(t, c, "t", strconv.Itoa(i), map[string]string{"a": strconv.Itoa(i), "region": []string{"eu", "us", "ap"}[i%3]})
	}
	if !waitFor(func() bool {
		return call(t, c, remoting.NewRequest(remoting.GetMaxOffset, remoting.Pairs("topic", "t", "queueId", "0"), nil)).Ext("offset") == "10"
	}) {
		t.Fatal("the sends were never indexed")
	}
	pull := func(group, sub, typ string) *remoting.Command {
		return call(t, c, remoting.NewRequest(remoting.PullMessage, remoting.Pairs(
			"consumerGroup", group, "topic", "t", "queueId", "0", "queueOffset", "0",
			"maxMsgNums", "32", "sysFlag", "0", "subscription", sub, "expressionType", typ, "suspendTimeoutMillis", "0",
		), nil))
	}
	bodies := func(resp *remoting.Command) string {
		var out []string
		for _, m := range decodeStored(t, resp.Body) {
			out = append(out, string(m.body))
		}
		return fmt.Sprint(out)
	}
	const expr = "a > 5 AND region IN ('eu','us')"
	if got := bodies(pull("g1", expr, "SQL92")); got != "[6 7 9]" {
		t.Fatalf("pull with its SQL92 subscription: %s", got)
	}
	if resp := call(t, c, heartbeatSQL("g2", "t", expr)); resp.Code != remoting.Success {
		t.Fatalf("heartbeat: %v", resp)
	}
	if got := bodies(pull("g2", "", "TAG")); got != "[6 7 9]" {
		t.Fatalf("pull without a subscription, the heartbeat's SQL92 one: %s", got)
	}
	if got := bodies(pull("g1", "", "TAG")); got != "[0 1 2 3 4 5 6 7 8 9]" {
		t.Fatalf("another group is not filtered: %s", got)
	}

	const bad = "a > 5 AND region IN ('eu' 'us')"
	for _, resp := range []*remoting.Command{
		pull("g1", bad, "SQL92"),
		call(t, c, heartbeatSQL("g3", "t", bad)),
		call(t, c, remoting.NewRequest(remoting.CheckClientConfig, nil,
			[]byte(`{"clientId":"c1","group":"g3","subscriptionData":{"topic":"t","subString":"a > 5 AND region IN ('eu' 'us')","expressionType":"SQL92"}}`))),
	} {
		if resp.Code != remoting.SubscriptionParseFailed || !strings.Contains(resp.Remark, "position 27") {
			t.Errorf("bad SQL92 filter: code %d %q", resp.Code, resp.Remark)
		}
	}
	// A heartbeat of two groups, one with a bad filter: the other joins.
	two, _ := json.Marshal(map[string]any{"clientID": "c2", "consumerDataSet": []any{
		map[string]any{"groupName": "g4", "subscriptionDataSet": []any{map[string]any{"topic": "t", "subString": bad, "expressionType": "SQL92"}}},
		map[string]any{"groupName": "g5", "subscriptionDataSet": []any{map[string]any{"topic": "t", "subString": expr, "expressionType": "SQL92"}}},
	}})
	if resp := call(t, c, remoting.NewRequest(remoting.HeartBeat, nil, two)); resp.Code != remoting.SubscriptionParseFailed || !strings.Contains(resp.Remark, "group g4") {
		t.Errorf("heartbeat with one bad group: code %d %q", resp.Code, resp.Remark)
	}
	if ids := b.ConsumerIDs("g5"); len(ids) != 1 || len(b.ConsumerIDs("g4")) != 0 {
		t.Errorf("g5 members %v, g4 members %v: want g5 alone to join", ids, b.ConsumerIDs("g4"))
	}
	if got := bodies(pull("g5", "", "TAG")); got != "[6 7 9]" {
		t.Errorf("g5 pulls with its SQL92 subscription: %s", got)
	}
	if resp := pull("g1", "*", "XML"); resp.Code != remoting.SubscriptionParseFailed || !strings.Contains(resp.Remark, `"XML"`) {
		t.Errorf("unknown expression type: code %d %q", resp.Code, resp.Remark)
	}
	if resp := call(t, c, remoting.NewRequest(remoting.CheckClientConfig, nil,
		[]byte(`{"clientId":"c1","group":"g3","subscriptionData":{"topic":"t","subString":"a > 5","expressionType":"SQL92"}}`))); resp.Code != remoting.Success {
		t.Errorf("CHECK_CLIENT_CONFIG of a good filter: code %d %q", resp.Code, resp.Remark)
	}
}

// TestSQL92PullNeedsWholeTopic: a SQL92 filter may select any subject, so
// pulling with one needs read on all of the topic, not on some subjects
// (nor on a subject spelled like the expression: `TRUE` is no subject).
func TestSQL92PullNeedsWholeTopic(t *testing.T) {
	a := authtest.New(t, testPasswords, "user dave\ntopic read devices/+\ngroup dave-g\n")
	s, c := startServer(t, a)
	f := &authzFixture{t: t, s: s, alice: c}
	f.ok(c, "dave", pullReq("dave-g", "devices", 0, "TRUE"))
	sql := pullReq("dave-g", "devices", 0, "TRUE")
	sql.Set("expressionType", "SQL92")
	f.refused(c, "dave", sql, "devices")
}
