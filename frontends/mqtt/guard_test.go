package mqtt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
)

func TestPasswordsAndACL(t *testing.T) {
	dir := t.TempDir()
	var pw []byte
	for _, u := range []string{"alice", "device-1"} {
		h, err := bcrypt.GenerateFromPassword([]byte(u+"-secret"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		pw = append(pw, fmt.Sprintf("%s:%s\n", u, h)...)
	}
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, err := auth.New(auth.Config{
		PasswordFile: write("passwd", string(pw)),
		ACLFile: write("acl", "pattern write devices/%u/telemetry\npattern read devices/%u/cmd\n"+
			"user alice\ntopic read devices/#\ntopic write devices/+/cmd\ngroup consoles\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := startFerry(t, t.TempDir(), Config{Guard: a})

	as := func(user string) clientOpt {
		return func(o *paho.ClientOptions) { o.SetUsername(user).SetPassword(user + "-secret") }
	}
	// Wrong password and anonymous: refused at CONNECT.
	for _, o := range []clientOpt{func(o *paho.ClientOptions) { o.SetUsername("alice").SetPassword("nope") }, func(*paho.ClientOptions) {}} {
		po := paho.NewClientOptions().AddBroker("tcp://" + f.addr).SetClientID("intruder").SetAutoReconnect(false)
		o(po)
		c := paho.NewClient(po)
		if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			c.Disconnect(0)
			t.Fatal("a client with bad credentials connected")
		}
	}

	alice := f.connect("console", as("alice"))
	in := newInbox()
	wait(t, alice.Subscribe("devices/#", 1, in.handler), "alice subscribes")
	// A subscription outside alice's rules is refused in SUBACK.
	tok := alice.Subscribe("secrets/#", 1, nil)
	tok.WaitTimeout(5 * time.Second)
	if st, ok := tok.(*paho.SubscribeToken); !ok || st.Result()["secrets/#"] != 0x80 {
		t.Fatalf("subscription to secrets/# not refused: %v", tok.(*paho.SubscribeToken).Result())
	}

	// A shared subscription joins a core group: it needs the group's join
	// permission besides read on the filter.
	for share, granted := range map[string]bool{"$share/consoles/devices/#": true, "$share/others/devices/#": false} {
		tok := alice.Subscribe(share, 1, nil)
		tok.WaitTimeout(5 * time.Second)
		_, filter, _ := strings.Cut(share[len("$share/"):], "/") // paho's results name the filter alone
		if got, seen := tok.(*paho.SubscribeToken).Result()[filter]; !seen || got < 0x80 != granted {
			t.Fatalf("SUBACK for %s: %#x, want granted %v (%v)", share, got, granted, tok.(*paho.SubscribeToken).Result())
		}
	}
	if tok := alice.Unsubscribe("$share/consoles/devices/#"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("unsubscribe from the share")
	}

	dev := f.connect("device-1", as("device-1"))
	devIn := newInbox()
	wait(t, dev.Subscribe("devices/device-1/cmd", 1, devIn.handler), "device subscribes to its commands")
	wait(t, dev.Publish("devices/device-1/telemetry", 1, false, "ok"), "device publishes its telemetry")
	wait(t, alice.Publish("devices/device-1/cmd", 1, false, "reboot"), "alice commands")
	devIn.waitN(t, 1)
	in.waitN(t, 2) // the telemetry and the command

	// A publish the ACL denies: an MQTT 3.1.1 client has no negative
	// acknowledgement, so the connection is closed and nothing is stored.
	before := f.core.Topics()
	dev.Publish("devices/device-2/telemetry", 1, false, "spoofed").WaitTimeout(2 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for dev.IsConnectionOpen() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if dev.IsConnectionOpen() {
		t.Fatal("a denied publish left the connection open")
	}
	if got := countMessages(t, f.core, "devices"); got != countIn(before, "devices") {
		t.Fatalf("devices holds %d messages after a denied publish, want %d", got, countIn(before, "devices"))
	}
}

func countIn(ts []core.TopicInfo, topic string) int64 {
	for _, ti := range ts {
		if ti.Name == topic {
			var n int64
			for _, q := range ti.QueueStats {
				n += q.Max - q.Min
			}
			return n
		}
	}
	return 0
}

func countMessages(t testing.TB, b *core.Broker, topic string) int64 {
	return countIn(b.Topics(), topic)
}

// A shared subscription joins the core group named by the share, beside a
// native member of the same group: the queues are split between them.
func TestSharedSubscriptionWithANativeMember(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	if _, err := f.core.CreateTopic("jobs", 8); err != nil {
		t.Fatal(err)
	}
	native, err := f.core.Join("workers", "native-1", core.MemberOptions{Subscriptions: []core.GroupSub{{Topic: "jobs"}}})
	if err != nil {
		t.Fatal(err)
	}
	in := newInbox()
	c := f.connect("mqtt-worker")
	wait(t, c.Subscribe("$share/workers/jobs/#", 1, in.handler), "shared subscribe")

	pub := f.connect("pub")
	const n = 400
	for i := range n {
		wait(t, pub.Publish(fmt.Sprintf("jobs/%d", i), 1, false, fmt.Sprint(i)), "publish")
	}
	got := map[string]int{}
	nativeN := 0
	deadline := time.Now().Add(20 * time.Second)
	for nativeN+in.len() < n && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		ds, err := native.Pull(ctx, 64)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		for _, d := range ds {
			got[string(d.Body)]++
			nativeN++
			native.Ack(d)
		}
	}
	for _, m := range in.waitN(t, n-nativeN) {
		got[string(m.Payload())]++
	}
	if len(got) != n {
		t.Fatalf("%d distinct jobs done, want %d", len(got), n)
	}
	for body, k := range got {
		if k != 1 {
			t.Fatalf("job %s done %d times", body, k)
		}
	}
	if nativeN < n/4 || nativeN > 3*n/4 {
		t.Fatalf("native member did %d of %d jobs: not balanced", nativeN, n)
	}
	t.Logf("native member: %d jobs, MQTT member: %d", nativeN, n-nativeN)
}

// A share named after a group the core cannot join it to is refused in
// SUBACK, not granted and then silent.
func TestShareOfABroadcastingGroupIsRefused(t *testing.T) {
	f := startFerry(t, t.TempDir(), Config{})
	if _, err := f.core.Join("everyone", "native", core.MemberOptions{Mode: core.Broadcasting, Subscriptions: []core.GroupSub{{Topic: "news"}}}); err != nil {
		t.Fatal(err)
	}
	c := f.connect("c")
	tok := c.Subscribe("$share/everyone/news/#", 1, nil)
	tok.WaitTimeout(5 * time.Second)
	if code := tok.(*paho.SubscribeToken).Result()["news/#"]; code != 0x80 { // paho keys a share by its filter
		t.Fatalf("SUBACK code %#x, want 0x80 (%v)", code, tok.(*paho.SubscribeToken).Result())
	}
}
