package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/coretest"
)

// fixture is an admin API over a real core, with a password file (alice
// is an admin, bob reads) and an ACL.
type fixture struct {
	b   *core.Broker
	srv *httptest.Server
}

const testACL = `
user alice
admin
topic readwrite #

user bob
topic read #
group join g
`

func newFixture(t *testing.T, passwords bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	cfg := auth.Config{}
	if passwords {
		cfg.PasswordFile = filepath.Join(dir, "passwd")
		for _, u := range []string{"alice", "bob"} {
			if _, err := auth.SetPassword(cfg.PasswordFile, u, u+"-secret", bcrypt.MinCost); err != nil {
				t.Fatal(err)
			}
		}
		cfg.ACLFile = filepath.Join(dir, "acl")
		if err := os.WriteFile(cfg.ACLFile, []byte(testACL), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := coretest.New(t, core.Config{AutoCreateTopics: true, DefaultQueues: 2, MaxRetries: 1})
	s, err := New(Options{Broker: b, Auth: a, Identity: Identity{Name: "b1", Role: "standalone"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &fixture{b: b, srv: srv}
}

// client is a browser's view of the API: a cookie jar and the CSRF token.
type client struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

func (f *fixture) client(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: f.srv.URL, c: &http.Client{Jar: jar}}
}

// do sends a request and decodes the answer into out (when not nil); it
// returns the status.
func (c *client) do(method, path string, body any, out any, hdr ...string) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.csrf != "" {
		req.Header.Set(CSRFHeader, c.csrf)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	return res.StatusCode
}

func (c *client) login(user, password string) int {
	var v sessionView
	st := c.do("POST", Prefix+"login", loginRequest{User: user, Password: password}, &v)
	c.csrf = v.CSRF
	return st
}

func TestLoginAndSessionCookie(t *testing.T) {
	f := newFixture(t, true)
	c := f.client(t)
	if st := c.do("GET", Prefix+"overview", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("overview before login: %d, want 401", st)
	}
	if st := c.login("alice", "wrong"); st != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", st)
	}
	raw, _ := json.Marshal(loginRequest{User: "alice", Password: "alice-secret"})
	res, err := http.Post(f.srv.URL+Prefix+"login", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	ck := res.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].MaxAge <= 0 || len(ck[0].Value) < 26 {
		t.Fatalf("session cookie: %+v", ck)
	}
	if st := c.login("alice", "alice-secret"); st != http.StatusOK {
		t.Fatalf("login: %d", st)
	}
	var o Overview
	if st := c.do("GET", Prefix+"overview", nil, &o); st != http.StatusOK || o.Broker.Name != "b1" || o.DevMode {
		t.Fatalf("overview: %d %+v", st, o)
	}
	// A text/plain body (what a cross-site form can send) is no login.
	res, err = http.Post(f.srv.URL+Prefix+"login", "text/plain", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("form login: %d", res.StatusCode)
	}
	// Basic credentials work without a session; logout ends the session.
	var ts []Topic
	if st := f.client(t).do("GET", Prefix+"topics", nil, &ts, "Authorization", "Basic "+basic("bob", "bob-secret")); st != http.StatusOK {
		t.Fatalf("basic: %d", st)
	}
	if st := c.do("POST", Prefix+"logout", nil, nil); st != http.StatusOK {
		t.Fatalf("logout: %d", st)
	}
	if st := c.do("GET", Prefix+"overview", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", st)
	}
}

func basic(u, p string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(u, p)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestChangesNeedCSRFOriginAndAdmin(t *testing.T) {
	f := newFixture(t, true)
	alice := f.client(t)
	alice.login("alice", "alice-secret")
	token := alice.csrf
	alice.csrf = ""
	if st := alice.do("POST", Prefix+"topics", createTopicRequest{Name: "t"}, nil); st != http.StatusForbidden {
		t.Fatalf("create without the CSRF token: %d", st)
	}
	alice.csrf = token
	if st := alice.do("POST", Prefix+"topics", createTopicRequest{Name: "t"}, nil, "Origin", "https://evil.example"); st != http.StatusForbidden {
		t.Fatalf("create from another origin: %d", st)
	}
	if st := alice.do("POST", Prefix+"topics", createTopicRequest{Name: "t", Queues: 3}, nil, "Origin", f.srv.URL); st != http.StatusCreated {
		t.Fatalf("create: %d", st)
	}
	bob := f.client(t)
	bob.login("bob", "bob-secret")
	var e apiError
	if st := bob.do("DELETE", Prefix+"topics/t", nil, &e); st != http.StatusForbidden || !strings.Contains(e.Error, "admin permission") {
		t.Fatalf("bob deletes: %d %q", st, e.Error)
	}
	var ts []Topic
	if st := bob.do("GET", Prefix+"topics", nil, &ts); st != http.StatusOK || len(ts) != 1 || len(ts[0].Queues) != 3 {
		t.Fatalf("bob lists: %d %+v", st, ts)
	}
	if st := alice.do("DELETE", Prefix+"topics/t", nil, nil); st != http.StatusNoContent {
		t.Fatalf("alice deletes: %d", st)
	}
	if st := alice.do("DELETE", Prefix+"topics/t", nil, &e); st != http.StatusNotFound {
		t.Fatalf("delete again: %d", st)
	}
}

func TestMessagesGroupsAndDeadLetters(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	f.b.CreateTopic("orders", 1)
	var ids []string
	for i, body := range []string{"one", "two", "\x00\xff"} {
		r, err := f.b.Publish(ctx, &core.Message{Topic: "orders", Subject: "eu", Keys: []string{"k" + string(rune('0'+i))}, Body: []byte(body)}, core.PublishOptions{Queue: 0})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.MessageID())
	}
	c := f.client(t)
	c.login("alice", "alice-secret")
	var m Message
	if st := c.do("GET", Prefix+"messages/"+ids[0], nil, &m); st != http.StatusOK || *m.Body != "one" || m.Subject != "eu" || m.DeliveryCount != 1 {
		t.Fatalf("by id: %d %+v", st, m)
	}
	m = Message{}
	if st := c.do("GET", Prefix+"messages/"+ids[2], nil, &m); st != http.StatusOK || m.Body != nil || m.BodyHex != "00ff" {
		t.Fatalf("binary body: %d %+v", st, m)
	}
	if st := c.do("GET", Prefix+"messages/nope", nil, nil); st != http.StatusNotFound {
		t.Fatalf("bad id: %d", st)
	}
	var ms Messages
	waitFor(t, "key index", func() bool {
		c.do("GET", Prefix+"messages?key=k1&topic=orders", nil, &ms)
		return len(ms.Messages) == 1
	})
	if ms.Messages[0].ID != ids[1] {
		t.Fatalf("by key: %+v", ms)
	}
	if st := c.do("GET", Prefix+"topics/orders/messages?queue=0&offset=1&max=5", nil, &ms); st != http.StatusOK || len(ms.Messages) != 2 || ms.Max != 3 {
		t.Fatalf("browse: %d %+v", st, ms)
	}

	// A member fails a message twice: dead-lettered with the reason.
	mem, err := f.b.Join("g", "m1", core.MemberOptions{Subscriptions: []core.GroupSub{{Topic: "orders"}}, Ordered: true, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ds, err := mem.Pull(pctx, 1)
		cancel()
		if err != nil || len(ds) != 1 {
			t.Fatalf("pull: %v", err)
		}
		mem.Nack(ctx, ds[0], errors.New("cannot parse"))
	}
	var dl DeadLetters
	waitFor(t, "a dead letter", func() bool {
		c.do("GET", Prefix+"groups/g/dead-letters", nil, &dl)
		return len(dl.Messages) == 1
	})
	if dl.Messages[0].DeadLetterReason != "cannot parse" || dl.Messages[0].OriginalID != ids[0] {
		t.Fatalf("dead letter: %+v", dl.Messages[0])
	}
	bob := f.client(t)
	bob.login("bob", "bob-secret")
	if st := bob.do("POST", Prefix+"groups/g/dead-letters/resend", ResendRequest{All: true}, nil); st != http.StatusForbidden {
		t.Fatalf("bob resends: %d", st)
	}
	var rs Resent
	off := int64(0)
	if st := c.do("POST", Prefix+"groups/g/dead-letters/resend", ResendRequest{Offset: &off}, &rs); st != http.StatusOK || rs.Resent != 1 {
		t.Fatalf("resend one: %d %+v", st, rs)
	}
	off = 7
	if st := c.do("POST", Prefix+"groups/g/dead-letters/resend", ResendRequest{Offset: &off}, nil); st != http.StatusNotFound {
		t.Fatalf("resend a missing one: %d", st)
	}
	mem.Leave()

	var g Group
	if st := c.do("POST", Prefix+"groups/g/reset", ResetRequest{To: "offset", Topic: "orders", Queue: 0, Offset: 2}, &g); st != http.StatusOK {
		t.Fatalf("reset to an offset: %d", st)
	}
	orders := func() GroupQueue {
		for _, q := range g.Queues {
			if q.Topic == "orders" {
				return q
			}
		}
		t.Fatalf("no queue of orders in %+v", g)
		return GroupQueue{}
	}
	if q := orders(); q.Committed != 2 || q.Lag != 2 {
		t.Fatalf("after reset: %+v", g)
	}
	if st := c.do("POST", Prefix+"groups/g/reset", ResetRequest{To: "first"}, &g); st != http.StatusOK || orders().Committed != 0 {
		t.Fatalf("reset to first: %d %+v", st, g)
	}
	if st := c.do("POST", Prefix+"groups/g/reset", ResetRequest{To: "time", Time: "yesterday"}, nil); st != http.StatusBadRequest {
		t.Fatalf("bad time: %d", st)
	}
	var gs []GroupSummary
	if st := bob.do("GET", Prefix+"groups", nil, &gs); st != http.StatusOK || len(gs) != 1 || gs[0].Lag != 4 {
		t.Fatalf("bob's groups: %d %+v", st, gs)
	}
	if st := bob.do("DELETE", Prefix+"groups/g", nil, nil); st != http.StatusForbidden {
		t.Fatalf("bob deletes the group: %d", st)
	}
	if st := c.do("DELETE", Prefix+"groups/g", nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete group: %d", st)
	}
}

func TestDevModeIsAnonymous(t *testing.T) {
	f := newFixture(t, false)
	c := f.client(t)
	var v sessionView
	if st := c.do("GET", Prefix+"session", nil, &v); st != http.StatusOK || !v.DevMode || !v.LoggedIn || !v.Admin {
		t.Fatalf("session: %d %+v", st, v)
	}
	c.csrf = v.CSRF
	if st := c.do("POST", Prefix+"topics", createTopicRequest{Name: "dev"}, nil); st != http.StatusCreated {
		t.Fatalf("create in dev mode: %d", st)
	}
	// Without the session's token a change is refused even here.
	if st := f.client(t).do("DELETE", Prefix+"topics/dev", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("delete without a session: %d", st)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
