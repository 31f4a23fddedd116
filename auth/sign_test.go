package auth

import (
	"crypto/hmac"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/remoting"
	"golang.org/x/crypto/bcrypt"
)

func TestAuthenticateSigned(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	// bob's line is from before signing keys: two fields.
	writeFile(t, pw, "bob:"+hash(t, "builder")+"\n")
	if _, err := SetPassword(pw, "alice", "wonder", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{PasswordFile: pw})
	if err != nil {
		t.Fatal(err)
	}
	aliceKey := []byte(remoting.SigningKey("alice", "wonder"))
	// verifyWith stands for a request signed with key: it verifies when the
	// broker holds the same key.
	verifyWith := func(key []byte, seen *[]byte) func([]byte) bool {
		return func(stored []byte) bool {
			*seen = stored
			return hmac.Equal(stored, key)
		}
	}
	var seen []byte
	if err := a.AuthenticateSigned("alice", verifyWith(aliceKey, &seen)); err != nil {
		t.Fatalf("alice signing with her key: %v", err)
	}
	if err := a.AuthenticateSigned("alice", verifyWith([]byte(remoting.SigningKey("alice", "guess")), &seen)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("alice signing with another key: %v", err)
	}
	seen = nil
	if err := a.AuthenticateSigned("mallory", verifyWith(aliceKey, &seen)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("unknown user: %v", err)
	}
	if len(seen) == 0 || hmac.Equal(seen, aliceKey) {
		t.Fatalf("unknown user: verified against %q, want a random key", seen)
	}
	if err := a.AuthenticateSigned("bob", verifyWith([]byte(remoting.SigningKey("bob", "builder")), &seen)); !errors.Is(err, ErrNoSigningKey) ||
		!strings.Contains(err.Error(), "ferry passwd") {
		t.Fatalf("bob has no key: %v", err)
	}
	if err := a.Authenticate("bob", "builder"); err != nil {
		t.Fatalf("bob's password (MQTT) no longer works: %v", err)
	}
	if err := a.AuthenticateSigned("", verifyWith(aliceKey, &seen)); !errors.Is(err, ErrAnonymousNotAllowed) {
		t.Fatalf("anonymous: %v", err)
	}

	if k, err := StoredSigningKey(pw, "alice"); err != nil || k != string(aliceKey) {
		t.Fatalf("StoredSigningKey(alice) = %q, %v", k, err)
	}
	if _, err := StoredSigningKey(pw, "bob"); !errors.Is(err, ErrNoSigningKey) {
		t.Fatalf("StoredSigningKey(bob): %v", err)
	}
	if _, err := StoredSigningKey(pw, "carol"); err == nil || !strings.Contains(err.Error(), `no user "carol"`) {
		t.Fatalf("StoredSigningKey(carol): %v", err)
	}

	// Without a password file, access keys are taken as given, unchecked.
	open, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := open.AuthenticateSigned("anyone", func([]byte) bool { return false }); err != nil {
		t.Fatalf("no password file: %v", err)
	}
}

func TestParseSigningKeys(t *testing.T) {
	good, key := hash(t, "x"), remoting.SigningKey("alice", "x")
	for _, c := range []struct{ body, want string }{
		{"alice:" + good + ":" + key + "\n", ""},
		{"alice:" + good + ":\n", "passwd:1: user \"alice\": signing key"},
		{"alice:" + good + ":" + key[:42] + "\n", "want 32 bytes in unpadded base64url"},
		{"alice:" + good + ":" + key + "=\n", "want 32 bytes"},
		{"alice:" + good + ":" + key + ":x\n", "want 32 bytes"},
		{"alice:" + good + ":" + strings.ReplaceAll(key, key[:1], "+") + "\n", "want 32 bytes"},
	} {
		users, _, err := parsePasswords("passwd", strings.NewReader(c.body))
		switch {
		case c.want == "" && (err != nil || string(users["alice"].key) != key):
			t.Errorf("%q: %v", c.body, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: error %v, want %q", c.body, err, c.want)
		}
	}
}
