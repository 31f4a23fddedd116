package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// hash returns a bcrypt hash of password at the lowest cost, to keep tests fast.
func hash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func writeFile(t testing.TB, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncBuffer is a log destination that tests read while a watcher writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func ptr[T any](v T) *T { return &v }

func TestAuthenticate(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, filepath.Join(dir, "passwd"), "# users\n\nalice:"+hash(t, "wonder")+"\n  bob:"+hash(t, "builder")+"  \r\n")
	for _, c := range []struct {
		name      string
		cfg       Config
		user, pwd string
		want      error
	}{
		{"good", Config{PasswordFile: pw}, "alice", "wonder", nil},
		{"good, indented line", Config{PasswordFile: pw}, "bob", "builder", nil},
		{"wrong password", Config{PasswordFile: pw}, "alice", "builder", ErrBadCredentials},
		{"empty password", Config{PasswordFile: pw}, "alice", "", ErrBadCredentials},
		{"unknown user", Config{PasswordFile: pw}, "carol", "wonder", ErrBadCredentials},
		{"anonymous, off by default with a password file", Config{PasswordFile: pw}, "", "", ErrAnonymousNotAllowed},
		{"anonymous with a password", Config{PasswordFile: pw}, "", "wonder", ErrAnonymousNotAllowed},
		{"anonymous, switched on", Config{PasswordFile: pw, AllowAnonymous: ptr(true)}, "", "", nil},
		{"anonymous, on without a password file", Config{}, "", "", nil},
		{"any user without a password file", Config{}, "carol", "x", nil},
		{"users still checked with anonymous on", Config{PasswordFile: pw, AllowAnonymous: ptr(true)}, "alice", "x", ErrBadCredentials},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second time from the cache, if it was good
				if err := a.Authenticate(c.user, c.pwd); !errors.Is(err, c.want) {
					t.Fatalf("Authenticate(%q, %q) = %v, want %v", c.user, c.pwd, err, c.want)
				}
			}
		})
	}

	if _, err := New(Config{AllowAnonymous: ptr(false)}); err == nil {
		t.Error("New with anonymous off and no password file: no error")
	}
	if a, _ := New(Config{}); !a.AnonymousAllowed() {
		t.Error("no password file: anonymous not allowed by default")
	}
	if a, _ := New(Config{PasswordFile: pw}); a.AnonymousAllowed() {
		t.Error("password file: anonymous allowed by default")
	}
}

// TestAuthenticateCache shows that a good password is remembered, and that
// a reload forgets it.
func TestAuthenticateCache(t *testing.T) {
	pw := writeFile(t, filepath.Join(t.TempDir(), "passwd"), "alice:"+hash(t, "wonder")+"\n")
	a, err := New(Config{PasswordFile: pw})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Authenticate("alice", "wonder"); err != nil {
		t.Fatal(err)
	}
	s := a.state.Load()
	if !s.good.has(a.goodKey("alice", "wonder")) || s.good.has(a.goodKey("alice", "wonder2")) {
		t.Fatal("the cache does not hold exactly the good password")
	}
	// The hash changes on disk: after the reload the old password fails.
	writeFile(t, pw, "alice:"+hash(t, "changed")+"\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := a.Authenticate("alice", "wonder"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password after reload: %v", err)
	}
	if err := a.Authenticate("alice", "changed"); err != nil {
		t.Fatalf("new password after reload: %v", err)
	}

	c := newGoodCache()
	for i := range goodCacheSize + 10 {
		c.add([32]byte{byte(i), byte(i >> 8)})
	}
	if len(c.m) != goodCacheSize {
		t.Fatalf("cache holds %d entries, want at most %d", len(c.m), goodCacheSize)
	}
}

func TestAuthenticatorAllow(t *testing.T) {
	dir := t.TempDir()
	acl := writeFile(t, filepath.Join(dir, "acl"), "user alice\ntopic readwrite a/#\n")
	a, err := New(Config{ACLFile: acl})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Allow("alice", "c", Write, "a/b") || a.Allow("bob", "c", Write, "a/b") {
		t.Error("ACL not applied")
	}
	if !a.AllowFilter("alice", "c", "a/+") || a.AllowFilter("alice", "c", "+/b") {
		t.Error("ACL not applied to filters")
	}

	open, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !open.Allow("anyone", "c", Read, "x/y") || !open.AllowFilter("", "c", "#") {
		t.Error("no ACL file: not everything allowed")
	}
	if open.Allow("anyone", "c", Read, "x/+") || open.AllowFilter("", "c", "x/#/y") || open.Allow("", "c", Write, "") {
		t.Error("no ACL file: a wildcard topic name or an invalid filter allowed")
	}
}

func TestParsePasswordsErrors(t *testing.T) {
	good := hash(t, "x")
	for _, c := range []struct{ body, want string }{
		{"alice:" + good + "\nbob\n", "passwd:2: want \"user:bcrypt-hash\""},
		{"# c\n\n:" + good + "\n", "passwd:3: empty username"},
		{"alice:" + good + "\n#x\nalice:" + good + "\n", "passwd:3: user \"alice\": listed again (first on line 1)"},
		{"alice:plain\n", "passwd:1: user \"alice\": not a bcrypt hash"},
		{"alice:\n", "passwd:1: user \"alice\": not a bcrypt hash"},
		{"al\x01ice:" + good + "\n", "passwd:1: username \"al\\x01ice\": contains a control character"},
		{"alice:" + good + "x\n", ""}, // bcrypt reads its 60 bytes; Compare fails later
	} {
		_, _, err := parsePasswords("passwd", strings.NewReader(c.body))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.body, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: error %v, want %q", c.body, err, c.want)
		}
	}

	// New reports the file and the line.
	pw := writeFile(t, filepath.Join(t.TempDir(), "passwd"), "alice:"+good+"\nbob:nohash\n")
	if _, err := New(Config{PasswordFile: pw}); err == nil || !strings.Contains(err.Error(), pw+":2:") {
		t.Errorf("New: error %v, want one naming %s:2", err, pw)
	}
	if _, err := New(Config{PasswordFile: filepath.Join(t.TempDir(), "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New with a missing file: %v", err)
	}
}

// TestReloadKeepsGoodRules loads good files, then bad ones: the good rules
// stay, for Reload and for Watch.
func TestReloadKeepsGoodRules(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, filepath.Join(dir, "passwd"), "alice:"+hash(t, "wonder")+"\n")
	acl := writeFile(t, filepath.Join(dir, "acl"), "user alice\ntopic read a/#\n")
	a, err := New(Config{PasswordFile: pw, ACLFile: acl})
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if err := a.Authenticate("alice", "wonder"); err != nil {
			t.Errorf("%s: alice: %v", when, err)
		}
		if !a.Allow("alice", "c", Read, "a/b") || a.Allow("alice", "c", Read, "b") {
			t.Errorf("%s: alice's rules changed", when)
		}
	}
	check("before")

	writeFile(t, acl, "user alice\ntopic read #\nnonsense\n")
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), acl+":3:") {
		t.Fatalf("Reload of a bad ACL: error %v, want one naming %s:3", err, acl)
	}
	check("after a bad ACL")

	// A good password file with a bad ACL file: neither is taken.
	writeFile(t, pw, "alice:"+hash(t, "other")+"\n")
	if err := a.Reload(); err == nil {
		t.Fatal("Reload of a bad ACL: no error")
	}
	check("after a good password file and a bad ACL")

	os.Remove(pw)
	if err := a.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Reload of a missing file: %v", err)
	}
	check("after the password file went away")
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, filepath.Join(dir, "passwd"), "alice:"+hash(t, "wonder")+"\n")
	acl := writeFile(t, filepath.Join(dir, "acl"), "user alice\ntopic read a/#\n")
	var logs syncBuffer
	a, err := New(Config{PasswordFile: pw, ACLFile: acl, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Watch(ctx, time.Millisecond)
	}()
	t.Cleanup(func() { cancel(); <-done })

	// A new user appears.
	writeFile(t, pw, "alice:"+hash(t, "wonder")+"\nbob:"+hash(t, "builder")+"\n")
	waitFor(t, "bob to be added", func() bool { return a.Authenticate("bob", "builder") == nil })

	// A bad ACL is logged once and changes nothing.
	// (Written whole, by a rename: a watcher could read a file written in
	// place half-way, and its valid first half.)
	if err := os.Rename(writeFile(t, filepath.Join(dir, "acl.bad"), "user alice\ntopic read #\ntopic bad/#/x\n"), acl); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload to be logged", func() bool { return strings.Contains(logs.String(), "reload failed") })
	if !a.Allow("alice", "c", Read, "a/b") || a.Allow("alice", "c", Read, "b") {
		t.Error("a bad ACL changed the rules")
	}
	time.Sleep(20 * time.Millisecond) // many more checks of the same bad file
	if n := strings.Count(logs.String(), "reload failed"); n != 1 {
		t.Errorf("the bad file was logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), acl+":3:") {
		t.Errorf("the log does not name %s:3:\n%s", acl, logs.String())
	}

	// Fixed, and replaced by a rename (as SetPassword and editors do).
	tmp := writeFile(t, filepath.Join(dir, "acl.new"), "user alice\ntopic read b\n")
	if err := os.Rename(tmp, acl); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fixed ACL", func() bool { return a.Allow("alice", "c", Read, "b") })
	if a.Allow("alice", "c", Read, "a/b") {
		t.Error("the old rules are still in force")
	}
}
