// Package auth authenticates Ferry's clients and decides what topics they
// may publish to and receive from. It knows no protocol: every front-end
// asks it the same questions, with topics written as full MQTT-style paths
// (a native client's core topic and subject make "topic/subject").
//
// Two files drive it, both optional and both reloadable (Reload, Watch):
//
//   - a password file of "user:bcrypt-hash:signing-key" lines (see
//     SetPassword; the signing key checks signed native requests, see
//     AuthenticateSigned);
//   - an ACL file in the acl_file format of mosquitto: user sections of
//     topic lines, and pattern lines for every client with %u and %c.
//
// docs/auth.md describes the formats and the matching rules.
package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var (
	// ErrBadCredentials is an unknown username or a wrong password; which of
	// the two is not told, nor shown by the time taken.
	ErrBadCredentials = errors.New("auth: bad username or password")
	// ErrAnonymousNotAllowed is a client without a username while anonymous
	// access is off.
	ErrAnonymousNotAllowed = errors.New("auth: anonymous access not allowed")
)

// Config configures an Authenticator.
type Config struct {
	// PasswordFile holds "user:bcrypt-hash[:signing-key]" lines; "" means no passwords:
	// every username is taken as given, unchecked.
	PasswordFile string
	// ACLFile holds the topic rules; "" allows every topic to every client
	// that authenticated.
	ACLFile string
	// AllowAnonymous admits clients without a username. nil means the
	// default: allowed without a password file, refused with one.
	AllowAnonymous *bool
	// ReloadInterval is how often the application (see Module) checks the
	// files for changes; 0 disables the check. New ignores it.
	ReloadInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Authenticator answers who a client is and what it may do. Its methods are
// safe for concurrent use; a reload swaps the rules in one step, so a check
// sees either the old files or the new ones.
type Authenticator struct {
	cfg       Config
	anonymous bool
	logger    *slog.Logger
	cacheKey  [32]byte // keys the HMAC of the cache of good passwords

	// mu serializes loading: Reload, Watch's checks and the dummy hashes.
	mu      sync.Mutex
	dummies map[int][]byte // by cost; guarded by mu
	failed  *stamps        // the files of the last failed reload; guarded by mu
	loads   uint64         // files loaded so far; guarded by mu

	state atomic.Pointer[state]
}

// state is what one load of the files produced.
type state struct {
	users    map[string]entry // by user; nil without a password file
	dummy    []byte           // bcrypt hash compared against for unknown users
	dummyKey []byte           // signing key verified against for unknown users
	acl      *acl             // nil without an ACL file
	good     *goodCache
	stamps   stamps
	gen      uint64 // counts the loads: see Generation
}

// New loads the files cfg names. A file that is missing or does not parse
// is an error naming it (and the line).
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{cfg: cfg, logger: cfg.Logger, dummies: make(map[int][]byte)}
	if a.logger == nil {
		a.logger = slog.Default()
	}
	a.anonymous = cfg.PasswordFile == ""
	if cfg.AllowAnonymous != nil {
		a.anonymous = *cfg.AllowAnonymous
	}
	if !a.anonymous && cfg.PasswordFile == "" {
		return nil, errors.New("auth: anonymous access is off and there is no password file: no client could connect")
	}
	if _, err := rand.Read(a.cacheKey[:]); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, err := a.load()
	if err != nil {
		return nil, err
	}
	a.state.Store(s)
	return a, nil
}

// Generation changes each time the files are loaded again. A front-end
// that remembers which credentials passed (for a connection) checks them
// again when it has changed: a reload that removes a user, or changes a
// password, then stops that user's next request.
func (a *Authenticator) Generation() uint64 { return a.state.Load().gen }

// Open reports whether the Authenticator checks nothing: no password file,
// anonymous clients admitted, no ACL file. A front-end may then skip it.
func (a *Authenticator) Open() bool {
	return a.anonymous && a.cfg.PasswordFile == "" && a.cfg.ACLFile == ""
}

// ChecksPasswords reports whether usernames are checked against a password
// file; without one every username is taken as given (docs/auth.md).
func (a *Authenticator) ChecksPasswords() bool { return a.cfg.PasswordFile != "" }

// AnonymousAllowed reports whether clients without a username are admitted.
func (a *Authenticator) AnonymousAllowed() bool { return a.anonymous }

// Authenticate checks a client's credentials. An empty user is an anonymous
// client, whatever the password. Without a password file any username is
// accepted as given.
//
// A good password is remembered until the next reload, so that a storm of
// reconnects does not cost a bcrypt comparison (tens of milliseconds) each:
// the cache holds an HMAC-SHA256 of user and password under a key drawn at
// start, never the password, and only passwords that matched.
func (a *Authenticator) Authenticate(user, password string) error {
	if unchecked, err := a.unchecked(user); unchecked {
		return err
	}
	s := a.state.Load()
	e, ok := s.users[user]
	if !ok {
		// As long as a known user's check, so that timing tells nothing.
		bcrypt.CompareHashAndPassword(s.dummy, []byte(password))
		return ErrBadCredentials
	}
	key := a.goodKey(user, password)
	if s.good.has(key) {
		return nil
	}
	if bcrypt.CompareHashAndPassword(e.hash, []byte(password)) != nil {
		return ErrBadCredentials
	}
	s.good.add(key)
	return nil
}

// unchecked reports whether user is not checked against the password file:
// an anonymous client, or any user when there is none. err then says
// whether it is admitted.
func (a *Authenticator) unchecked(user string) (bool, error) {
	if user != "" && a.cfg.PasswordFile != "" {
		return false, nil
	}
	if !a.anonymous {
		return true, ErrAnonymousNotAllowed
	}
	return true, nil
}

// Allow reports whether the client may publish to (Write) or receive from
// (Read) the topic name topic, which holds no wildcards. user is "" for an
// anonymous client. A topic with wildcards is never allowed.
func (a *Authenticator) Allow(user, clientID string, acc Access, topic string) bool {
	if !validTopic(topic) {
		return false
	}
	s := a.state.Load()
	return s.acl == nil || s.acl.allow(user, clientID, acc, topic)
}

// AllowFilter reports whether the client may subscribe to filter, which may
// hold wildcards (for a shared subscription, the filter after $share/G/).
// It is allowed only when every topic it can match is readable: one rule
// granting read contains it, and no deny rule overlaps it. An invalid filter
// is never allowed.
func (a *Authenticator) AllowFilter(user, clientID, filter string) bool {
	f, ok := splitFilter(filter)
	if !ok {
		return false
	}
	s := a.state.Load()
	return s.acl == nil || s.acl.allowFilter(user, clientID, f)
}

// Reload reads both files again. Either both are taken or, when one cannot
// be read or does not parse, neither: the rules in force stay and the error
// is returned. A successful reload forgets the cache of good passwords.
func (a *Authenticator) Reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, err := a.load()
	if err != nil {
		return err
	}
	a.state.Store(s)
	a.failed = nil
	return nil
}

// Watch checks the files every interval until ctx is done, and reloads when
// one has changed (another size, modification time or file). It logs each
// reload; a failed one is logged once and the rules in force stay.
func (a *Authenticator) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.reloadIfChanged()
		}
	}
}

// reloadIfChanged is one check of Watch.
func (a *Authenticator) reloadIfChanged() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.stat()
	if now.equal(a.state.Load().stamps) || a.failed != nil && now.equal(*a.failed) {
		return
	}
	s, err := a.load()
	if err != nil {
		a.failed = &now
		a.logger.Error("auth: reload failed, keeping the rules in force", "err", err)
		return
	}
	a.state.Store(s)
	a.failed = nil
	a.logger.Info("auth: reloaded", "password-file", a.cfg.PasswordFile, "users", len(s.users),
		"acl-file", a.cfg.ACLFile, "rules", s.acl.count())
}

// load reads the files into a new state. a.mu is held.
func (a *Authenticator) load() (*state, error) {
	a.loads++
	s := &state{good: newGoodCache(), gen: a.loads, dummyKey: newDummyKey()}
	if path := a.cfg.PasswordFile; path != "" {
		data, st, err := readFile(path)
		if err != nil {
			return nil, err
		}
		users, cost, err := parsePasswords(path, bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		if cost == 0 {
			cost = bcrypt.DefaultCost
		}
		if s.dummy, err = a.dummyHash(cost); err != nil {
			return nil, err
		}
		s.users, s.stamps.passwords = users, st
	}
	if path := a.cfg.ACLFile; path != "" {
		data, st, err := readFile(path)
		if err != nil {
			return nil, err
		}
		rules, err := parseACL(path, bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		s.acl, s.stamps.acl = rules, st
	}
	return s, nil
}

// dummyHash returns a hash at cost of a password nobody knows. a.mu is held.
func (a *Authenticator) dummyHash(cost int) ([]byte, error) {
	if h, ok := a.dummies[cost]; ok {
		return h, nil
	}
	h, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return nil, err
	}
	a.dummies[cost] = h
	return h, nil
}

// goodKey is the cache key of a user and password.
func (a *Authenticator) goodKey(user, password string) [32]byte {
	m := hmac.New(sha256.New, a.cacheKey[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k [32]byte
	m.Sum(k[:0])
	return k
}

// goodCacheSize bounds the cache of good passwords; when it is full, an
// arbitrary entry makes room.
const goodCacheSize = 4096

// goodCache remembers users and passwords that matched their hash.
type goodCache struct {
	mu sync.Mutex
	m  map[[32]byte]struct{}
}

func newGoodCache() *goodCache { return &goodCache{m: make(map[[32]byte]struct{})} }

func (c *goodCache) has(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[k]
	return ok
}

func (c *goodCache) add(k [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= goodCacheSize {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = struct{}{}
}

// stamp identifies one version of a file, as Watch sees it.
type stamp struct {
	info os.FileInfo // nil when the file could not be read
}

func (s stamp) equal(o stamp) bool {
	if s.info == nil || o.info == nil {
		return s.info == nil && o.info == nil
	}
	return s.info.Size() == o.info.Size() && s.info.ModTime().Equal(o.info.ModTime()) && os.SameFile(s.info, o.info)
}

// stamps are the stamps of both files (zero for one not configured).
type stamps struct{ passwords, acl stamp }

func (s stamps) equal(o stamps) bool { return s.passwords.equal(o.passwords) && s.acl.equal(o.acl) }

// stat stamps the configured files as they are now. a.mu is held.
func (a *Authenticator) stat() stamps {
	var s stamps
	if a.cfg.PasswordFile != "" {
		s.passwords.info, _ = os.Stat(a.cfg.PasswordFile)
	}
	if a.cfg.ACLFile != "" {
		s.acl.info, _ = os.Stat(a.cfg.ACLFile)
	}
	return s
}

// readFile reads path and stamps the version it read.
func readFile(path string) ([]byte, stamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, stamp{}, fmt.Errorf("auth: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, stamp{}, fmt.Errorf("auth: %s: %w", path, err)
	}
	return data, stamp{info: info}, nil
}
