package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// CookieName is the session cookie's name.
const CookieName = "ferry_session"

// CSRFHeader carries a session's CSRF token on every request that changes
// something.
const CSRFHeader = "X-Ferry-CSRF"

// maxSessions bounds the sessions held; a login past it drops the one that
// expires first.
const maxSessions = 10000

// session is a logged-in user of the console.
type session struct {
	user    string
	csrf    string
	expires time.Time
}

// sessions are the console's logins, in memory: a restart (or a replicated
// broker's failover) logs everyone out.
type sessions struct {
	ttl time.Duration

	mu sync.Mutex
	m  map[string]*session // by id
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: make(map[string]*session)}
}

// create starts a session for user.
func (s *sessions) create(user string, now time.Time) (id string, sess *session) {
	sess = &session{user: user, csrf: rand.Text(), expires: now.Add(s.ttl)}
	id = rand.Text() // 26 base32 characters: 130 bits
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	if len(s.m) >= maxSessions {
		var first string
		for k, v := range s.m {
			if first == "" || v.expires.Before(s.m[first].expires) {
				first = k
			}
		}
		delete(s.m, first)
	}
	s.m[id] = sess
	return id, sess
}

// get returns the live session of id, nil if there is none.
func (s *sessions) get(id string, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[id]
	if sess == nil {
		return nil
	}
	if now.After(sess.expires) {
		delete(s.m, id)
		return nil
	}
	return sess
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// cookie is the session cookie for id: HttpOnly (no script reads it),
// SameSite=Strict (no other site's page sends it), Secure when the
// request came over TLS.
func (s *sessions) cookie(r *http.Request, id string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: id, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// sameOrigin reports whether a request that changes something comes from
// a page of this server: its Origin header, when the browser sent one
// (every browser does on a POST or DELETE from a script), names the host
// the request was sent to. A request without Origin is a program's, not a
// page's: the CSRF token or its credentials decide.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// tokenEqual compares tokens in constant time.
func tokenEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
