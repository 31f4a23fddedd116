package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferrymq/ferry/internal/atomicfile"
	"github.com/ferrymq/ferry/remoting"
)

// entry is one user's line of a password file.
type entry struct {
	hash []byte // bcrypt
	key  []byte // the signing key (its text, as clients use it); nil on a line without one
}

// parsePasswords reads a password file: "user:bcrypt-hash" or
// "user:bcrypt-hash:signing-key" lines. It returns the entries by user and
// the highest bcrypt cost among them (0 when there are none). name is used
// in errors, which give the line.
func parsePasswords(name string, r io.Reader) (map[string]entry, int, error) {
	users := make(map[string]entry)
	lines := make(map[string]int)
	maxCost := 0
	err := eachLine(name, r, func(n int, line string) error {
		user, rest, ok := strings.Cut(line, ":")
		if !ok {
			return errors.New(`want "user:bcrypt-hash" or "user:bcrypt-hash:signing-key"`)
		}
		if err := checkUser(user); err != nil {
			return err
		}
		hash, key, hasKey := strings.Cut(rest, ":")
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return fmt.Errorf("user %q: not a bcrypt hash: %w", user, err)
		}
		e := entry{hash: []byte(hash)}
		if hasKey {
			if err := checkSigningKey(key); err != nil {
				return fmt.Errorf("user %q: %w", user, err)
			}
			e.key = []byte(key)
		}
		if prev, dup := lines[user]; dup {
			return fmt.Errorf("user %q: listed again (first on line %d)", user, prev)
		}
		lines[user] = n
		users[user] = e
		maxCost = max(maxCost, cost)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return users, maxCost, nil
}

// checkUser reports why name cannot be a username in a password file.
func checkUser(name string) error {
	switch {
	case name == "":
		return errors.New("empty username")
	case strings.ContainsRune(name, ':'):
		return fmt.Errorf("username %q: contains ':'", name)
	case name[0] == '#':
		return fmt.Errorf("username %q: begins with '#'", name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("username %q: begins or ends with white space", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("username %q: contains a control character", name)
	}
	return nil
}

// SetPassword adds user to the password file at path, or replaces its
// line, with a bcrypt hash of password at cost and the signing key derived
// from it (SigningKey): "user:hash:key". Every other line is kept as it is.
// The file is created if missing; it is written atomically (a temporary file
// renamed over it, see atomicfile.Write) with mode 0600. A file that does not parse is left alone.
// replaced reports whether user was in the file already.
func SetPassword(path, user, password string, cost int) (replaced bool, err error) {
	if err := checkUser(user); err != nil {
		return false, err
	}
	if password == "" {
		return false, errors.New("empty password")
	}
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if _, _, err := parsePasswords(path, bytes.NewReader(old)); err != nil {
		return false, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return false, err
	}
	entry := user + ":" + string(hash) + ":" + remoting.SigningKey(user, password)

	var out []string
	if len(old) > 0 {
		out = strings.Split(strings.TrimSuffix(string(old), "\n"), "\n")
	}
	for i, line := range out {
		if u, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && u == user {
			out[i], replaced = entry, true
		}
	}
	if !replaced {
		out = append(out, entry)
	}
	return replaced, atomicfile.Write(path, []byte(strings.Join(out, "\n")+"\n"))
}

// StoredSigningKey returns user's signing key from the password file at
// path, for an operator to give a RocketMQ client as its SecretKey. A user
// whose line has no key (written before signing keys existed) is
// ErrNoSigningKey; an unknown user is an error naming the file.
func StoredSigningKey(path, user string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	users, _, err := parsePasswords(path, bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	e, ok := users[user]
	switch {
	case !ok:
		return "", fmt.Errorf("%s: no user %q", path, user)
	case e.key == nil:
		return "", fmt.Errorf("%s: %w", path, ErrNoSigningKey)
	}
	return string(e.key), nil
}
