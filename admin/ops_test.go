package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/coretest"
	"github.com/ferrymq/ferry/core/plugin"
	"github.com/ferrymq/ferry/frontends/mqtt"
)

// deadLetter makes group g dead-letter every message of topic it reads.
func deadLetters(t *testing.T, b *core.Broker, g, topic string, n int) {
	t.Helper()
	mem, err := b.Join(g, "m1", core.MemberOptions{Subscriptions: []core.GroupSub{{Topic: topic}}, Ordered: true, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Leave()
	for range 2 * n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ds, err := mem.Pull(ctx, 1)
		cancel()
		if err != nil || len(ds) != 1 {
			t.Fatalf("pull: %v", err)
		}
		mem.Nack(context.Background(), ds[0], errors.New("cannot parse"))
	}
}

func TestResendByIDAndByPage(t *testing.T) {
	f := newFixture(t, true)
	f.b.CreateTopic("orders", 1)
	var ids []string
	for _, body := range []string{"a", "b", "c"} {
		r, err := f.b.Publish(context.Background(), &core.Message{Topic: "orders", Body: []byte(body)}, core.PublishOptions{Queue: 0})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.MessageID())
	}
	deadLetters(t, f.b, "g", "orders", 3)
	c := f.client(t)
	c.login("alice", "alice-secret")
	var dl DeadLetters
	waitFor(t, "three dead letters", func() bool {
		c.do("GET", Prefix+"groups/g/dead-letters", nil, &dl)
		return len(dl.Messages) == 3
	})
	var rs Resent
	if st := c.do("POST", Prefix+"groups/g/dead-letters/resend", ResendRequest{IDs: []string{ids[1], dl.Messages[2].ID}}, &rs); st != http.StatusOK || rs.Resent != 2 {
		t.Fatalf("resend by the first id and by the dead letter's: %d %+v", st, rs)
	}
	if st := c.do("POST", Prefix+"groups/g/dead-letters/resend", ResendRequest{IDs: []string{"nope"}}, nil); st != http.StatusNotFound {
		t.Fatalf("resend of no such id: %d", st)
	}
	from := int64(0)
	if st := c.do("POST", Prefix+"groups/g/dead-letters/resend", ResendRequest{From: &from, Max: 2}, &rs); st != http.StatusOK || rs.Resent != 2 || rs.Next != 2 || rs.Max != 3 {
		t.Fatalf("resend a page: %d %+v", st, rs)
	}
	if st := c.do("POST", Prefix+"groups/g/dead-letters/resend", ResendRequest{From: &from, All: true}, nil); st != http.StatusBadRequest {
		t.Fatalf("resend two ways at once: %d", st)
	}
	_, hi := f.b.Offsets("orders", 0)
	if hi != 7 {
		t.Fatalf("orders holds %d messages, want 3 and 4 resent", hi)
	}

	// A purge moves the group to the end of the topic.
	var p Purged
	if st := c.do("POST", Prefix+"topics/orders/purge", nil, &p); st != http.StatusOK || len(p.Groups) != 1 || p.Groups[0] != "g" {
		t.Fatalf("purge: %d %+v", st, p)
	}
	var g Group
	c.do("GET", Prefix+"groups/g", nil, &g)
	if g.Lag != 0 {
		t.Fatalf("lag after purge: %+v", g)
	}
	bob := f.client(t)
	bob.login("bob", "bob-secret")
	if st := bob.do("POST", Prefix+"topics/orders/purge", nil, nil); st != http.StatusForbidden {
		t.Fatalf("bob purges: %d", st)
	}
}

// mqttPlugin is the real MQTT front-end under its plug-in name.
type mqttPlugin struct{ s *mqtt.Server }

func (mqttPlugin) Name() string                 { return "mqtt" }
func (mqttPlugin) Start(context.Context) error  { return nil }
func (mqttPlugin) Stop(context.Context) error   { return nil }
func (p mqttPlugin) Clients() []plugin.Client   { return p.s.Clients() }
func (p mqttPlugin) Disconnect(id string) error { return p.s.Disconnect(id) }

func TestClientsListAndDisconnect(t *testing.T) {
	b := coretest.New(t, core.Config{AutoCreateTopics: true})
	m, err := mqtt.New(b, mqtt.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	for _, u := range []string{"alice", "bob"} {
		if _, err := auth.SetPassword(pw, u, u+"-secret", 4); err != nil {
			t.Fatal(err)
		}
	}
	acl := filepath.Join(dir, "acl")
	if err := writeFile(acl, testACL); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{PasswordFile: pw, ACLFile: acl})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Broker: b, Auth: a, Plugins: []plugin.Plugin{mqttPlugin{m}}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{b: b, srv: newServer(t, s)}
	o := paho.NewClientOptions().AddBroker("tcp://" + m.Addr("tcp")).SetClientID("dev-7").SetAutoReconnect(false)
	dev := paho.NewClient(o)
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer dev.Disconnect(0)
	c := f.client(t)
	c.login("alice", "alice-secret")
	var cs []ClientView
	waitFor(t, "the client listed", func() bool {
		c.do("GET", Prefix+"clients", nil, &cs)
		return len(cs) == 1
	})
	if cs[0].Protocol != "mqtt" || cs[0].ID != "dev-7" || cs[0].ProtocolVersion != 4 || cs[0].RemoteAddr == "" {
		t.Fatalf("clients: %+v", cs)
	}
	bob := f.client(t)
	bob.login("bob", "bob-secret")
	if st := bob.do("GET", Prefix+"clients", nil, nil); st != http.StatusForbidden {
		t.Fatalf("bob lists clients: %d", st)
	}
	if st := c.do("DELETE", Prefix+"clients/amqp/dev-7", nil, nil); st != http.StatusNotFound {
		t.Fatalf("disconnect on a protocol that lists none: %d", st)
	}
	if st := c.do("DELETE", Prefix+"clients/mqtt/dev-7", nil, nil); st != http.StatusNoContent {
		t.Fatalf("disconnect: %d", st)
	}
	waitFor(t, "the client gone", func() bool { // a 404 once the engine has ended its session
		return !dev.IsConnectionOpen() && c.do("DELETE", Prefix+"clients/mqtt/dev-7", nil, nil) == http.StatusNotFound
	})
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

func newServer(t *testing.T, s *Server) *httptest.Server {
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}
