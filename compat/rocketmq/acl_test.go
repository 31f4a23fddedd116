package rocketmq

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/remoting"
)

// TestRocketMQGoClientACL: RocketMQ's Go client with ACL credentials
// (AccessKey = the Ferry username, SecretKey = the signing key ferry passwd
// stores) signs its requests, and Ferry's broker verifies them and applies
// its ACL file: alice (readwrite devices/#, group alice-consumer) sends and consumes devices; bob
// (readwrite bobtopic/#, group bob-consumer) may do neither; a wrong SecretKey is refused.
// (rocketmq-client-go's pull consumer races with itself under -race: the
// test uses push consumers.)
func TestRocketMQGoClientACL(t *testing.T) {
	rlog.SetLogLevel("error")
	dir := t.TempDir()
	cfg := auth.Config{PasswordFile: filepath.Join(dir, "passwd"), ACLFile: filepath.Join(dir, "acl")}
	for user, password := range map[string]string{"alice": "wonder", "bob": "builder"} {
		if _, err := auth.SetPassword(cfg.PasswordFile, user, password, bcrypt.MinCost); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(cfg.ACLFile, []byte("user alice\ntopic readwrite devices/#\ngroup alice-consumer\nuser bob\ntopic readwrite bobtopic/#\ngroup bob-consumer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	credentials := func(user string) primitive.Credentials {
		t.Helper()
		key, err := auth.StoredSigningKey(cfg.PasswordFile, user)
		if err != nil {
			t.Fatal(err)
		}
		return primitive.Credentials{AccessKey: user, SecretKey: key}
	}

	f := startFerryAuth(t, a)
	if _, err := f.broker.CreateTopic("devices", 2); err != nil {
		t.Fatal(err)
	}
	waitForRoute(t, f.ns, "devices")

	// One instance name per user: rocketmq-client-go shares a connection,
	// and the credentials of the first client started, by instance name.
	// A consumer shares its user's producer's instance, already started:
	// a new instance's first route update races with its consumer's first
	// rebalance (in rocketmq-client-go, under -race).
	newProducer := func(group, instance string, cr primitive.Credentials) rocketmq.Producer {
		t.Helper()
		return startProducer(t, f.ns, producer.WithRetry(0), producer.WithGroupName(group), producer.WithInstanceName(instance),
			producer.WithCredentials(cr))
	}
	// startConsumer starts a push consumer of every tag of devices, which
	// hands each batch to consume and acknowledges it.
	startConsumer := func(group, instance string, cr primitive.Credentials, consume func([]*primitive.MessageExt)) {
		t.Helper()
		startPushConsumer(t, f.ns, "devices", consumer.MessageSelector{Type: consumer.TAG, Expression: "*"},
			func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
				consume(msgs)
				return consumer.ConsumeSuccess, nil
			}, consumer.WithGroupName(group), consumer.WithInstance(instance), consumer.WithCredentials(cr))
	}
	ctx := context.Background()

	alice := newProducer("alice-producer", "alice", credentials("alice"))
	const n = 10
	for i := range n {
		msg := primitive.NewMessage("devices", []byte(fmt.Sprint("reading ", i))).WithTag(fmt.Sprint(i % 3))
		res, err := alice.SendSync(ctx, msg)
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("alice's send %d: %v %v", i, res, err)
		}
	}

	bob := newProducer("bob-producer", "bob", credentials("bob"))
	if _, err := bob.SendSync(ctx, primitive.NewMessage("devices", []byte("bob's")).WithTag("1")); err == nil ||
		!strings.Contains(err.Error(), "not allowed to publish to devices/1") {
		t.Fatalf("bob's send to devices: %v, want a refusal", err)
	}
	wrong := newProducer("wrong-producer", "alice-guessing", primitive.Credentials{AccessKey: "alice", SecretKey: remoting.SigningKey("alice", "guess")})
	if _, err := wrong.SendSync(ctx, primitive.NewMessage("devices", []byte("guess")).WithTag("1")); err == nil ||
		!strings.Contains(err.Error(), "bad access key or signature") {
		t.Fatalf("send with a wrong SecretKey: %v, want a refusal", err)
	}

	// bob's push consumer of devices, in his own group: its offset lookups
	// and pulls are refused (the broker counts them), and it receives nothing.
	var bobGot atomic.Int32
	startConsumer("bob-consumer", "bob", credentials("bob"), func(msgs []*primitive.MessageExt) { bobGot.Add(int32(len(msgs))) })
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.fe)
	for deadline := time.Now().Add(60 * time.Second); refusedReads(t, reg) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no request of bob's consumer was refused")
		}
	}

	// alice's push consumer receives her messages.
	var mu sync.Mutex
	got := map[string]bool{}
	startConsumer("alice-consumer", "alice", credentials("alice"), func(msgs []*primitive.MessageExt) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			got[string(m.Body)] = true
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		count := len(got)
		mu.Unlock()
		if count == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice received %d of her %d messages", count, n)
		}
	}
	if n := bobGot.Load(); n != 0 {
		t.Fatalf("bob received %d messages of devices", n)
	}
}

// refusedReads is how many requests the broker refused for want of read
// on a topic: bob's consumer is stopped at its first offset lookup or pull.
func refusedReads(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "ferry_native_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["permission"] == "read" {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
