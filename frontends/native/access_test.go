package native

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/internal/authtest"
	"github.com/ferrymq/ferry/remoting"
)

// aliceRules is one user, alice/secret, who may publish to
// devices/+/telemetry and read devices/#, but nothing of devices/13.
func aliceRules(t *testing.T) auth.Config {
	return authtest.Files(t, map[string]string{"alice": "secret"},
		"user alice\ntopic write devices/+/telemetry\ntopic read devices/#\ntopic deny devices/13/#\ngroup g\n")
}

func withCredentials(req *remoting.Command, user, password string) *remoting.Command {
	req.Set(remoting.FieldAccessKey, user)
	req.Set(remoting.FieldPassword, password)
	return req
}

// TestAccess: with a password file and an ACL, every native request must
// carry good credentials, and sends and pulls follow the topic rules; a
// refusal says why and stores nothing.
func TestAccess(t *testing.T) {
	cfg := aliceRules(t)
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, c := startServer(t, a)
	refused := func(req *remoting.Command, why string) {
		t.Helper()
		resp := call(t, c, req)
		if resp.Code != remoting.NoPermission || !strings.Contains(resp.Remark, why) {
			t.Fatalf("code %d %q, want NO_PERMISSION saying %q", resp.Code, resp.Remark, why)
		}
	}
	ok := func(req *remoting.Command) *remoting.Command {
		t.Helper()
		resp := call(t, c, req)
		if resp.Code != remoting.Success && resp.Code != remoting.PullNotFound {
			t.Fatalf("code %d %q, want success", resp.Code, resp.Remark)
		}
		return resp
	}

	refused(sendV2("devices", "42/telemetry", []byte("x"), 0), "anonymous access is not allowed")
	refused(withCredentials(sendV2("devices", "42/telemetry", []byte("x"), 0), "alice", "wrong"), "bad username or password")
	refused(withCredentials(sendV2("devices", "42/telemetry", []byte("x"), 0), "mallory", "secret"), "bad username or password")
	signed := sendV2("devices", "42/telemetry", []byte("x"), 0)
	signed.Set("Signature", "c2lnbmF0dXJl")
	refused(signed, "RocketMQ ACL")

	ok(withCredentials(sendV2("devices", "42/telemetry", []byte("x"), 0), "alice", "secret"))
	refused(withCredentials(sendV2("devices", "42/status", []byte("x"), 0), "alice", "secret"), "publish to devices/42/status")
	refused(withCredentials(sendV2("devices", "13/telemetry", []byte("x"), 0), "alice", "secret"), "publish to devices/13/telemetry")
	// Indexed in order: once the last allowed send is there, a refused one
	// stored before it would be too.
	ok(withCredentials(sendV2("devices", "7/telemetry", []byte("last"), 0), "alice", "secret"))
	if got := storedSubjects(t, s, "devices", 2); got != "42/telemetry 7/telemetry" {
		t.Fatalf("stored %q, want only the allowed 42/telemetry and 7/telemetry", got)
	}

	pull := func(sub string) *remoting.Command {
		return withCredentials(remoting.NewRequest(remoting.PullMessage, remoting.Pairs(
			"consumerGroup", "g", "topic", "devices", "queueId", "0", "queueOffset", "0",
			"maxMsgNums", "32", "sysFlag", "0", "suspendTimeoutMillis", "0", "subscription", sub,
		), nil), "alice", "secret")
	}
	if resp := ok(pull("42/+")); len(decodeStored(t, resp.Body)) != 1 {
		t.Fatalf("pull of 42/+ got %d messages, want the 1 of 42", len(decodeStored(t, resp.Body)))
	}
	ok(pull("42/telemetry"))
	ok(pull("42/telemetry || 7/telemetry"))
	// As for an MQTT SUBSCRIBE: a filter is allowed only if all it can
	// match is readable, and devices/13/# is denied.
	refused(pull("*"), "read devices with *")
	refused(pull("+/telemetry"), "read devices with +/telemetry")
	refused(pull("13/telemetry || 42/telemetry"), "read devices")

	create := withCredentials(remoting.NewRequest(remoting.UpdateAndCreateTopic, remoting.Pairs(
		"topic", "other", "writeQueueNums", strconv.Itoa(4)), nil), "alice", "secret")
	refused(create, "create or change topic other")

	// A new password, reloaded: the connection's remembered pass no longer counts.
	if _, err := auth.SetPassword(cfg.PasswordFile, "alice", "changed", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	refused(withCredentials(sendV2("devices", "42/telemetry", []byte("x"), 0), "alice", "secret"), "bad username or password")
	ok(withCredentials(sendV2("devices", "42/telemetry", []byte("x"), 0), "alice", "changed"))
}

// storedSubjects waits until queue 0 of topic holds n messages (or 5 s
// pass) and returns their subjects: sends are indexed in order, so once
// the last allowed one is there, a refused one stored before it would be.
func storedSubjects(t *testing.T, s *Server, topic string, n int) string {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(5 * time.Second); len(got) < n && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		res, err := s.b.Read(t.Context(), topic, 0, 0, core.ReadOptions{Max: 10})
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, m := range res.Messages {
			got = append(got, m.Subject)
		}
	}
	return strings.Join(got, " ")
}
