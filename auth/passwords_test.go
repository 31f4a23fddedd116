package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestSetPassword(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")

	// Created when missing, with mode 0600.
	if replaced, err := SetPassword(path, "alice", "wonder", bcrypt.MinCost); err != nil || replaced {
		t.Fatalf("SetPassword new file: replaced %v, %v", replaced, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode %v, want 0600", perm)
	}

	// Comments and other users are kept; a user is replaced in place.
	data, _ := os.ReadFile(path)
	writeFile(t, path, "# staff\n"+string(data)+"\nbob:"+hash(t, "builder")+"\n")
	if replaced, err := SetPassword(path, "alice", "changed", bcrypt.MinCost); err != nil || !replaced {
		t.Fatalf("SetPassword existing user: replaced %v, %v", replaced, err)
	}
	if _, err := SetPassword(path, "carol", "c", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 5 || lines[0] != "# staff" || !strings.HasPrefix(lines[1], "alice:") ||
		lines[2] != "" || !strings.HasPrefix(lines[3], "bob:") || !strings.HasPrefix(lines[4], "carol:") {
		t.Errorf("file after edits:\n%s", data)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode after a rewrite %v, want 0600", info.Mode().Perm())
	}

	a, err := New(Config{PasswordFile: path})
	if err != nil {
		t.Fatal(err)
	}
	for user, pwd := range map[string]string{"alice": "changed", "bob": "builder", "carol": "c"} {
		if err := a.Authenticate(user, pwd); err != nil {
			t.Errorf("%s: %v", user, err)
		}
	}
	if err := a.Authenticate("alice", "wonder"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("alice's old password: %v", err)
	}

	// No temporary file is left behind.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the file alone", len(entries))
	}
}

func TestSetPasswordErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, filepath.Join(dir, "bad"), "alice:x\n")
	for _, c := range []struct{ path, user, password, want string }{
		{filepath.Join(dir, "p"), "", "x", "empty username"},
		{filepath.Join(dir, "p"), "a:b", "x", "contains ':'"},
		{filepath.Join(dir, "p"), "#a", "x", "begins with '#'"},
		{filepath.Join(dir, "p"), " a", "x", "white space"},
		{filepath.Join(dir, "p"), "a\nb", "x", "control character"},
		{filepath.Join(dir, "p"), "a", "", "empty password"},
		{filepath.Join(dir, "p"), "a", strings.Repeat("x", 73), "exceeds 72 bytes"},
		{bad, "bob", "x", bad + ":1:"},
		{filepath.Join(dir, "missing", "p"), "a", "x", "no such file"},
	} {
		_, err := SetPassword(c.path, c.user, c.password, bcrypt.MinCost)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetPassword(%q, %q): error %v, want %q", c.path, c.user, err, c.want)
		}
	}
	if data, _ := os.ReadFile(bad); string(data) != "alice:x\n" {
		t.Errorf("a file that does not parse was changed: %q", data)
	}
}
