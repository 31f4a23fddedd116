// Package authtest makes the auth rules a test needs: a password file of
// its users and an ACL file, in the test's temporary directory.
package authtest

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferrymq/ferry/auth"
)

// New is an Authenticator over Files(t, users, acl).
func New(t testing.TB, users map[string]string, acl string) *auth.Authenticator {
	t.Helper()
	a, err := auth.New(Files(t, users, acl))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Files writes a password file of users (name → password, hashed at
// bcrypt's lowest cost, for speed) and an ACL file holding acl (none when
// acl is empty) in a temporary directory, and returns the config naming them.
func Files(t testing.TB, users map[string]string, acl string) auth.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := auth.Config{PasswordFile: filepath.Join(dir, "passwd")}
	for user, password := range users {
		if _, err := auth.SetPassword(cfg.PasswordFile, user, password, bcrypt.MinCost); err != nil {
			t.Fatal(err)
		}
	}
	if acl != "" {
		cfg.ACLFile = filepath.Join(dir, "acl")
		if err := os.WriteFile(cfg.ACLFile, []byte(acl), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}
