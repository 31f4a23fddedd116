package native

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/remoting"
)

// TestSignedRequests: a request signed with the user's signing key (RocketMQ
// ACL 1.0) passes and the topic rules apply to its user; a wrong key, an
// unknown access key, a tampered body or field, an old FerrySignedAt are
// NO_PERMISSION and store nothing; a user whose line predates signing keys
// is told to set the password again.
func TestSignedRequests(t *testing.T) {
	cfg := aliceRules(t)
	bobHash, err := bcrypt.GenerateFromPassword([]byte("builder"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(cfg.PasswordFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("bob:" + string(bobHash) + "\n") // a line without a signing key
	f.Close()
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, c := startServer(t, a)
	aliceKey := []byte(remoting.SigningKey("alice", "secret"))
	signed := func(req *remoting.Command, user string, key []byte, at time.Time) *remoting.Command {
		req.Sign(user, key, at)
		return req
	}
	refused := func(req *remoting.Command, why string) {
		t.Helper()
		resp := call(t, c, req)
		if resp.Code != remoting.NoPermission || !strings.Contains(resp.Remark, why) {
			t.Fatalf("code %d %q, want NO_PERMISSION saying %q", resp.Code, resp.Remark, why)
		}
	}
	ok := func(req *remoting.Command) {
		t.Helper()
		if resp := call(t, c, req); resp.Code != remoting.Success {
			t.Fatalf("code %d %q, want success", resp.Code, resp.Remark)
		}
	}
	now := time.Now()

	ok(signed(sendV2("devices", "1/telemetry", []byte("rocketmq"), 0), "alice", aliceKey, time.Time{}))
	ok(signed(sendV2("devices", "2/telemetry", []byte("ferry"), 0), "alice", aliceKey, now))
	refused(signed(sendV2("devices", "13/telemetry", []byte("x"), 0), "alice", aliceKey, now), "publish to devices/13/telemetry")

	refused(signed(sendV2("devices", "3/telemetry", []byte("x"), 0), "alice", []byte(remoting.SigningKey("alice", "guess")), now),
		"bad access key or signature")
	refused(signed(sendV2("devices", "3/telemetry", []byte("x"), 0), "mallory", aliceKey, now), "bad access key or signature")
	tampered := signed(sendV2("devices", "3/telemetry", []byte("x"), 0), "alice", aliceKey, now)
	tampered.Body = []byte("y")
	refused(tampered, "bad access key or signature")
	moved := signed(sendV2("devices", "3/telemetry", []byte("x"), 0), "alice", aliceKey, now)
	moved.Set("b", "other") // the topic
	refused(moved, "bad access key or signature")
	refused(signed(sendV2("devices", "3/telemetry", []byte("x"), 0), "alice", aliceKey, now.Add(-time.Hour)), "more than 5m0s from the broker's clock")
	refused(signed(sendV2("devices", "3/telemetry", []byte("x"), 0), "alice", aliceKey, now.Add(time.Hour)), "more than 5m0s from the broker's clock")
	garbled := sendV2("devices", "3/telemetry", []byte("x"), 0)
	garbled.Set(remoting.FieldSignedAt, "yesterday")
	refused(signed(garbled, "alice", aliceKey, time.Time{}), remoting.FieldSignedAt)

	refused(signed(sendV2("devices", "3/telemetry", []byte("x"), 0), "bob", []byte(remoting.SigningKey("bob", "builder")), now),
		`signed request from "bob": the user has no signing key`)
	// bob's password still passes (deprecated), as it does over MQTT; the
	// ACL gives him nothing.
	refused(withCredentials(sendV2("devices", "4/telemetry", []byte("bob"), 0), "bob", "builder"), "not allowed to publish to devices/4/telemetry")

	// Indexed in order: once the last allowed send is there, a refused one
	// stored before it would be too.
	ok(signed(sendV2("devices", "5/telemetry", []byte("last"), 0), "alice", aliceKey, now))
	if got := storedSubjects(t, s, "devices", 3); got != "1/telemetry 2/telemetry 5/telemetry" {
		t.Fatalf("stored %q, want only the allowed sends", got)
	}
}

func TestIdentifySignedSkew(t *testing.T) {
	a, err := auth.New(aliceRules(t))
	if err != nil {
		t.Fatal(err)
	}
	x := newAccess(a)
	key := []byte(remoting.SigningKey("alice", "secret"))
	now := time.Now()
	for _, c := range []struct {
		at time.Time
		ok bool
	}{
		{now, true}, {now.Add(-maxSignedSkew + time.Second), true}, {now.Add(maxSignedSkew - time.Second), true},
		{now.Add(-maxSignedSkew - time.Second), false}, {now.Add(maxSignedSkew + time.Second), false},
	} {
		req := sendV2("devices", "1/telemetry", []byte("x"), 0)
		req.Sign("alice", key, c.at)
		user, refusal := x.identifySigned(req, now)
		if (refusal == nil) != c.ok || c.ok && user != "alice" {
			t.Errorf("signed %v from now: user %q, refusal %v", c.at.Sub(now), user, refusal)
		}
	}
}

// BenchmarkSendV2Auth is BenchmarkSendV2 against a broker that checks
// credentials: with a password (checked once per connection, then
// compared with the remembered pair) and signed (verified per request).
func BenchmarkSendV2Auth(b *testing.B) {
	t := &testing.T{}
	a, err := auth.New(aliceRules(t))
	if err != nil {
		b.Fatal(err)
	}
	_, c := startServer(t, a)
	key := []byte(remoting.SigningKey("alice", "secret"))
	body := make([]byte, 128)
	for _, mode := range []string{"password", "signed"} {
		b.Run(mode, func(b *testing.B) {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := sendV2("devices", "1/telemetry", body, 0)
					req.Serialization = remoting.RocketMQ
					if mode == "signed" {
						req.Sign("alice", key, time.Now())
					} else {
						withCredentials(req, "alice", "secret")
					}
					resp, err := c.Invoke(b.Context(), req)
					if err != nil || resp.Code != remoting.Success {
						b.Fatal(err, resp)
					}
				}
			})
		})
	}
}
