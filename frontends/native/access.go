package native

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/remoting"
)

// maxSignedSkew is how far from the broker's clock the time a request was
// signed (FerrySignedAt, which Ferry's SDK adds) may be: a captured request
// cannot be replayed after it.
const maxSignedSkew = 5 * time.Minute

// access applies the shared auth rules (auth.Authenticator, the MQTT
// front-end's too) to native requests. Topics are checked as MQTT-style
// paths, topic/subject. Without an Authenticator it allows everything.
//
// Each connection remembers the credentials that last passed, so that a
// producer's stream of sends costs one check, not one per request; a
// reload of the auth files checks them again.
type access struct {
	a       *auth.Authenticator
	refused refusals

	mu    sync.Mutex
	known map[*remoting.Conn]credentials
}

type credentials struct {
	user, password string
	gen            uint64 // the auth files' generation they passed under
}

func newAccess(a *auth.Authenticator) *access {
	return &access{a: a, known: map[*remoting.Conn]credentials{}}
}

// identify returns who sent req on c, or a response refusing it. A signed
// request (RocketMQ ACL 1.0) is verified on its own, every time; a request
// carrying a password (deprecated) is checked as an MQTT CONNECT is, and the
// connection remembers the pair that passed.
func (x *access) identify(c *remoting.Conn, req *remoting.Command) (string, *remoting.Command) {
	user, refused := x.checkCredentials(c, req)
	if refused != nil {
		x.refused.count(req.Code, "credentials")
	}
	return user, refused
}

// checkCredentials is identify, less the count of refusals.
func (x *access) checkCredentials(c *remoting.Conn, req *remoting.Command) (string, *remoting.Command) {
	if x.a == nil {
		return "", nil
	}
	if req.Signed() {
		return x.identifySigned(req, time.Now())
	}
	cr := credentials{req.Ext(remoting.FieldAccessKey), req.Ext(remoting.FieldPassword), x.a.Generation()}
	x.mu.Lock()
	passed, seen := x.known[c]
	x.mu.Unlock()
	if seen && passed == cr {
		return cr.user, nil
	}
	err := x.a.Authenticate(cr.user, cr.password)
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrAnonymousNotAllowed):
		return "", req.Response(remoting.NoPermission, "native: anonymous access is not allowed (auth.allow-anonymous): "+
			"send credentials (ferry's --username and --password, the Go SDK's client.WithCredentials)")
	default:
		return "", req.Response(remoting.NoPermission, "native: "+err.Error())
	}
	if c != nil {
		x.mu.Lock()
		x.known[c] = cr
		x.mu.Unlock()
	}
	return cr.user, nil
}

// identifySigned checks a signed request at now: its AccessKey is the
// username, and its Signature must be the one the user's signing key (the
// password file's third field) makes of it. When Ferry's SDK signed it, the
// time it did must be within maxSignedSkew of now.
func (x *access) identifySigned(req *remoting.Command, now time.Time) (string, *remoting.Command) {
	user := req.Ext(remoting.FieldAccessKey)
	if user == "" {
		return "", req.Response(remoting.NoPermission, "native: a signed request (RocketMQ ACL) without an AccessKey")
	}
	switch err := x.a.AuthenticateSigned(user, req.VerifySignature); {
	case err == nil:
	case errors.Is(err, auth.ErrNoSigningKey):
		return "", req.Response(remoting.NoPermission, "native: signed request from "+strconv.Quote(user)+": "+
			strings.TrimPrefix(err.Error(), "auth: "))
	default:
		return "", req.Response(remoting.NoPermission, "native: "+err.Error())
	}
	at, ok, err := req.SignedAt()
	switch {
	case err != nil:
		return "", req.Response(remoting.NoPermission, "native: "+err.Error())
	case ok && (at.Before(now.Add(-maxSignedSkew)) || at.After(now.Add(maxSignedSkew))):
		return "", req.Response(remoting.NoPermission, fmt.Sprintf("native: the request was signed at %s, more than %v from the broker's clock "+
			"(%s): a replay, or a clock that is off", at.UTC().Format(time.RFC3339), maxSignedSkew, now.UTC().Format(time.RFC3339)))
	}
	return user, nil
}

// forget drops what c remembered; the connection closed.
func (x *access) forget(c *remoting.Conn) {
	x.mu.Lock()
	delete(x.known, c)
	x.mu.Unlock()
}

// path is a message's topic as the ACL sees it: topic/subject.
func path(topic, subject string) string {
	if subject == "" {
		return topic
	}
	return topic + "/" + subject
}

// refuse answers req with NO_PERMISSION, saying what was refused and the
// rule that refused it, and counts it under the permission.
func (x *access) refuse(req *remoting.Command, perm, what, rule string) *remoting.Command {
	x.refused.count(req.Code, perm)
	return req.Response(remoting.NoPermission, "native: not allowed to "+what+" ("+rule+")")
}

// mayPublish refuses req unless user may write every message of msgs. A
// group's retry and dead-letter topics (core.GroupOf) are the group's:
// whatever the topic rules say, they take the group's join permission
// (a RocketMQ consumer sends a failed message to its retry topic itself
// when the send-back fails).
func (x *access) mayPublish(user string, req *remoting.Command, msgs []*core.Message) *remoting.Command {
	if x.a == nil {
		return nil
	}
	for _, m := range msgs {
		if g, ok := core.GroupOf(m.Topic); ok {
			if refused := x.mayGroup(user, req, auth.GroupJoin, g); refused != nil {
				return refused
			}
			continue
		}
		if p := path(m.Topic, m.Subject); !x.a.Allow(user, "", auth.Write, p) {
			return x.refuse(req, "write", "publish to "+p, x.a.Refusal(user, "", auth.Write, p))
		}
	}
	return nil
}

// mayRead refuses req unless user may read topic's messages that f
// selects, as an MQTT SUBSCRIBE to the same filter would be: every message
// of the topic, each of its tags, or its wildcard filter. A group's retry
// and dead-letter topics need the group's join permission instead.
func (x *access) mayRead(user string, req *remoting.Command, topic string, f route.Filter) *remoting.Command {
	if x.a == nil {
		return nil
	}
	if g, ok := core.GroupOf(topic); ok {
		return x.mayGroup(user, req, auth.GroupJoin, g)
	}
	var ok bool
	var probe string // a topic the refusal is explained on
	switch tags := f.Tags(); {
	case f.All() || f.SQL92(): // a SQL92 filter may select any subject
		ok, probe = x.a.AllowFilter(user, "", topic+"/#"), topic
	case tags != nil:
		ok = true
		for _, tag := range tags {
			if p := path(topic, tag); ok && !x.a.Allow(user, "", auth.Read, p) {
				ok, probe = false, p
			}
		}
	default:
		ok, probe = x.a.AllowFilter(user, "", path(topic, f.String())), topic
	}
	if ok {
		return nil
	}
	what := topic
	if expr := strings.TrimSpace(req.Ext("subscription")); expr != "" {
		what += " with " + expr
	}
	return x.refuse(req, "read", "read "+what, x.a.Refusal(user, "", auth.Read, probe))
}

// mayReadSome refuses req unless user may read some of topic: what tells
// of a topic without giving its messages (offsets, statistics).
func (x *access) mayReadSome(user string, req *remoting.Command, topic string) *remoting.Command {
	if x.a == nil {
		return nil
	}
	if g, ok := core.GroupOf(topic); ok {
		return x.mayGroup(user, req, auth.GroupJoin, g)
	}
	if x.a.MayReadSome(user, "", topic) || x.a.Admin(user) {
		return nil
	}
	return x.refuse(req, "read", "read anything of topic "+topic, x.a.Refusal(user, "", auth.Read, topic))
}

// mayReadMessage refuses req unless user may read m.
func (x *access) mayReadMessage(user string, req *remoting.Command, m *core.Message) *remoting.Command {
	if x.a == nil {
		return nil
	}
	if g, ok := core.GroupOf(m.Topic); ok {
		return x.mayGroup(user, req, auth.GroupJoin, g)
	}
	if p := path(m.Topic, m.Subject); !x.a.Allow(user, "", auth.Read, p) {
		return x.refuse(req, "read", "read "+p, x.a.Refusal(user, "", auth.Read, p))
	}
	return nil
}

// mayGroup refuses req unless user holds want on group.
func (x *access) mayGroup(user string, req *remoting.Command, want auth.GroupPerm, group string) *remoting.Command {
	if x.a == nil || x.a.AllowGroup(user, want, group) {
		return nil
	}
	return x.refuse(req, "group_"+want.String(), want.String()+" group "+group, x.a.GroupRefusal(user, want, group))
}

// mayAdminister refuses req unless user may create or change topic: write
// on the topic name itself (a rule for topic, or for topic/#, which
// matches its parent), or the admin permission.
func (x *access) mayAdminister(user string, req *remoting.Command, topic string) *remoting.Command {
	if x.a == nil || x.a.Admin(user) {
		return nil
	}
	if _, ok := core.GroupOf(topic); !ok && x.a.Allow(user, "", auth.Write, topic) {
		return nil
	}
	return x.refuse(req, "admin", "create or change topic "+topic, x.a.Refusal(user, "", auth.Write, topic))
}

// seesGroup reports whether user may see group among the broker's groups.
func (x *access) seesGroup(user, group string) bool {
	return x.a == nil || x.a.SeesGroup(user, group)
}

// refusals count the refused requests by request code and permission.
type refusals struct {
	mu sync.Mutex
	n  map[refusalKey]int64
}

type refusalKey struct {
	code int16
	perm string
}

func (r *refusals) count(code int16, perm string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[refusalKey]int64{}
	}
	r.n[refusalKey{code, perm}]++
}

func (r *refusals) each(fn func(code int16, perm string, n int64)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, n := range r.n {
		fn(k.code, k.perm, n)
	}
}
