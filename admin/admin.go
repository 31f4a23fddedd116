// Package admin is Ferry's admin HTTP API: JSON over the core
// (*core.Broker) for the web console (package console) and for programs,
// served on the HTTP port under Prefix (docs/admin-api.md).
//
// Who asks is a user of the password file, identified by a session cookie
// (POST Prefix+"login") or by HTTP Basic credentials on each request.
// Viewing needs read rights on what is shown (the ACL's topic and group
// lines, as the front-ends check them); changing needs the ACL's admin
// line (or the group's reset permission, for its offsets and dead
// letters). A request that changes something with a session carries the
// session's CSRF token in CSRFHeader and, from a browser, an Origin of
// this host; the cookie is SameSite=Strict. Without a password file
// (development) every username is taken as given, and a visitor without a
// session is anonymous, as the front-ends have it.
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/plugin"
)

// Prefix is where the API is served.
const Prefix = "/api/v1/"

// Identity is the broker as the overview shows it.
type Identity struct {
	Cluster string `json:"cluster"`
	Name    string `json:"name"`
	ID      int64  `json:"id"`
	// Role is "standalone", "master" or "replica" (a replicated broker
	// serves the API only while it is its group's master).
	Role string `json:"role"`
	// Version is the build's version.
	Version string `json:"version"`
}

// Options configure a Server.
type Options struct {
	Broker *core.Broker
	Auth   *auth.Authenticator
	// Identity is shown by the overview.
	Identity Identity
	// Metrics, when set, is gathered for the connections per protocol
	// (ferry_native_connections, ferry_mqtt_connections,
	// ferry_amqp_connections).
	Metrics prometheus.Gatherer
	// Plugins are the process's plug-ins: those that list their clients
	// (plugin.ClientLister) are served under clients.
	Plugins []plugin.Plugin
	// SessionTTL is how long a login lasts (default 8 hours).
	SessionTTL time.Duration
	Logger     *slog.Logger
}

// Server serves the admin API.
type Server struct {
	b        *core.Broker
	a        *auth.Authenticator
	id       Identity
	metrics  prometheus.Gatherer
	clients  map[string]plugin.ClientLister // by plug-in name
	sessions *sessions
	logger   *slog.Logger
	mux      *http.ServeMux
	now      func() time.Time
}

// New makes the API's server.
func New(o Options) (*Server, error) {
	if o.Broker == nil || o.Auth == nil {
		return nil, errors.New("admin: a broker and an authenticator are needed")
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Server{
		b: o.Broker, a: o.Auth, id: o.Identity, metrics: o.Metrics, clients: clientListers(o.Plugins),
		sessions: newSessions(o.SessionTTL), logger: o.Logger, mux: http.NewServeMux(), now: time.Now,
	}
	s.routes()
	return s, nil
}

// ServeHTTP serves the API's routes (under Prefix).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	p := strings.TrimSuffix(Prefix, "/")
	open := func(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }
	open("GET "+p+"/session", s.getSession)
	open("POST "+p+"/login", s.login)
	open("POST "+p+"/logout", s.logout)

	for _, r := range []struct {
		pattern string
		h       func(http.ResponseWriter, *http.Request, string)
	}{
		{"GET /overview", s.overview},
		{"GET /topics", s.listTopics},
		{"POST /topics", s.createTopic},
		{"GET /topics/{topic}", s.getTopic},
		{"DELETE /topics/{topic}", s.deleteTopic},
		{"POST /topics/{topic}/purge", s.purgeTopic},
		{"GET /topics/{topic}/messages", s.browse},
		{"GET /groups", s.listGroups},
		{"GET /groups/{group}", s.getGroup},
		{"DELETE /groups/{group}", s.deleteGroup},
		{"POST /groups/{group}/reset", s.resetGroup},
		{"GET /groups/{group}/dead-letters", s.deadLetters},
		{"POST /groups/{group}/dead-letters/resend", s.resend},
		{"GET /messages", s.findByKey},
		{"GET /messages/{id}", s.getMessage},
		{"GET /clients", s.listClients},
		{"DELETE /clients/{protocol}/{id}", s.disconnectClient},
	} {
		method, path, _ := strings.Cut(r.pattern, " ")
		s.mux.Handle(method+" "+p+path, s.authed(r.h))
	}
	s.mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such API route: %s %s", r.Method, r.URL.Path))
	})
}

// authed identifies the user of a request and, for one that changes
// something, checks that it comes from this server's pages.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, status, err := s.identify(r)
		if err != nil {
			writeError(w, status, err)
			return
		}
		h(w, r, user)
	})
}

// identify returns the user of r: Basic credentials, checked against the
// password file; else the session of the cookie, whose CSRF token a
// change must carry; else, without a password file, an anonymous reader.
func (s *Server) identify(r *http.Request) (user string, status int, err error) {
	changes := r.Method != http.MethodGet && r.Method != http.MethodHead
	if changes && !sameOrigin(r) {
		return "", http.StatusForbidden, fmt.Errorf("cross-site request refused: Origin %q is not this server (%s)", r.Header.Get("Origin"), r.Host)
	}
	if u, p, ok := r.BasicAuth(); ok {
		if err := s.a.Authenticate(u, p); err != nil {
			return "", http.StatusUnauthorized, err
		}
		return u, 0, nil
	}
	if c, err := r.Cookie(CookieName); err == nil {
		if sess := s.sessions.get(c.Value, s.now()); sess != nil {
			if changes && !tokenEqual(r.Header.Get(CSRFHeader), sess.csrf) {
				return "", http.StatusForbidden, fmt.Errorf("missing or wrong %s header: changes need the session's CSRF token", CSRFHeader)
			}
			return sess.user, 0, nil
		}
	}
	if !s.a.ChecksPasswords() && s.a.AnonymousAllowed() && !changes {
		return "", 0, nil
	}
	return "", http.StatusUnauthorized, errors.New("log in first: POST " + Prefix + "login, or HTTP Basic credentials")
}

// sessionView is what GET session answers.
type sessionView struct {
	LoggedIn bool   `json:"loggedIn"`
	User     string `json:"user"`
	CSRF     string `json:"csrf,omitempty"`
	// DevMode: no password file, every username is taken as given.
	DevMode bool `json:"devMode"`
	// Admin: the user may make changes (the ACL's admin line, or no ACL).
	Admin bool `json:"admin"`
}

func (s *Server) viewOf(user string, sess *session) sessionView {
	v := sessionView{User: user, DevMode: !s.a.ChecksPasswords(), Admin: s.a.Admin(user)}
	if sess != nil {
		v.LoggedIn, v.CSRF = true, sess.csrf
	}
	return v
}

// getSession tells the console who is logged in. Without a password file,
// a visitor without a session gets an anonymous one (when anonymous
// clients are admitted), so that the console works without a login as the
// front-ends do.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil {
		if sess := s.sessions.get(c.Value, s.now()); sess != nil {
			writeJSON(w, http.StatusOK, s.viewOf(sess.user, sess))
			return
		}
	}
	if !s.a.ChecksPasswords() && s.a.AnonymousAllowed() {
		id, sess := s.sessions.create("", s.now())
		http.SetCookie(w, s.sessions.cookie(r, id, int(s.sessions.ttl/time.Second)))
		writeJSON(w, http.StatusOK, s.viewOf("", sess))
		return
	}
	writeJSON(w, http.StatusOK, s.viewOf("", nil))
}

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// login checks a user's password and starts a session. The body must be
// JSON (a cross-site form cannot send it without a preflight the server
// does not answer).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, fmt.Errorf("cross-site login refused: Origin %q", r.Header.Get("Origin")))
		return
	}
	var req loginRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if req.User == "" && s.a.ChecksPasswords() {
		writeError(w, http.StatusUnauthorized, errors.New("a username is needed"))
		return
	}
	if err := s.a.Authenticate(req.User, req.Password); err != nil {
		s.logger.Warn("admin: login refused", "user", req.User, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusUnauthorized, err)
		return
	}
	if c, err := r.Cookie(CookieName); err == nil {
		s.sessions.remove(c.Value) // a new id at each login: no fixation
	}
	id, sess := s.sessions.create(req.User, s.now())
	http.SetCookie(w, s.sessions.cookie(r, id, int(s.sessions.ttl/time.Second)))
	s.logger.Info("admin: logged in", "user", req.User, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, s.viewOf(req.User, sess))
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil {
		sess := s.sessions.get(c.Value, s.now())
		if sess != nil && !tokenEqual(r.Header.Get(CSRFHeader), sess.csrf) {
			writeError(w, http.StatusForbidden, fmt.Errorf("missing or wrong %s header", CSRFHeader))
			return
		}
		s.sessions.remove(c.Value)
	}
	http.SetCookie(w, s.sessions.cookie(r, "", -1))
	writeJSON(w, http.StatusOK, s.viewOf("", nil))
}

// maxBody bounds a request's JSON body.
const maxBody = 64 << 10

func readJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("the body must be JSON (Content-Type application/json), got %q", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, apiError{Error: err.Error()})
}

// statusOf maps the core's errors onto HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, core.ErrUnknownTopic), errors.Is(err, core.ErrUnknownGroup), errors.Is(err, core.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, core.ErrInvalidName), errors.Is(err, core.ErrInvalidQueue), errors.Is(err, core.ErrInvalidMessage):
		return http.StatusBadRequest
	case errors.Is(err, core.ErrTopicExists):
		return http.StatusConflict
	case errors.Is(err, core.ErrFenced), errors.Is(err, core.ErrNotReplicated), errors.Is(err, core.ErrDiskFull):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeCoreError(w http.ResponseWriter, err error) { writeError(w, statusOf(err), err) }

// refused answers 403 naming what user may not do and why.
func refused(w http.ResponseWriter, user, what, why string) {
	who := "user " + user
	if user == "" {
		who = "anonymous"
	}
	writeError(w, http.StatusForbidden, fmt.Errorf("%s may not %s: %s", who, what, why))
}
