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

// retryPrefix names a consumer group's retry topic: "%RETRY%" + group.
const retryPrefix = "%RETRY%"

// access applies the shared auth rules (auth.Authenticator, the MQTT
// front-end's too) to native requests. Topics are checked as MQTT-style
// paths, topic/subject. Without an Authenticator it allows everything.
//
// Each connection remembers the credentials that last passed, so that a
// producer's stream of sends costs one check, not one per request; a
// reload of the auth files checks them again.
type access struct {
	a *auth.Authenticator

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

// mayPublish refuses req unless user may write every message of msgs.
func (x *access) mayPublish(user string, req *remoting.Command, msgs []*core.Message) *remoting.Command {
	if x.a == nil {
		return nil
	}
	for _, m := range msgs {
		if p := path(m.Topic, m.Subject); !x.a.Allow(user, "", auth.Write, p) {
			return req.Response(remoting.NoPermission, "native: not allowed to publish to "+p+" (auth.acl-file)")
		}
	}
	return nil
}

// mayRead refuses req unless user may read topic's messages that f
// selects, as an MQTT SUBSCRIBE to the same filter would be: every message
// of the topic, each of its tags, or its wildcard filter. Retry topics
// (%RETRY%group) hold what the group's members were allowed to read: they
// are not checked again.
func (x *access) mayRead(user string, req *remoting.Command, topic string, f route.Filter) *remoting.Command {
	if x.a == nil || strings.HasPrefix(topic, retryPrefix) {
		return nil
	}
	var ok bool
	switch tags := f.Tags(); {
	case f.All():
		ok = x.a.AllowFilter(user, "", topic+"/#")
	case tags != nil:
		ok = true
		for _, tag := range tags {
			ok = ok && x.a.Allow(user, "", auth.Read, path(topic, tag))
		}
	default:
		ok = x.a.AllowFilter(user, "", path(topic, f.String()))
	}
	if ok {
		return nil
	}
	what := topic
	if expr := strings.TrimSpace(req.Ext("subscription")); expr != "" {
		what += " with " + expr
	}
	return req.Response(remoting.NoPermission, "native: not allowed to read "+what+" (auth.acl-file)")
}

// mayAdminister refuses req unless user may write the topic name itself:
// a rule for topic, or for topic/#, which matches its parent.
func (x *access) mayAdminister(user string, req *remoting.Command, topic string) *remoting.Command {
	if x.a == nil || x.a.Allow(user, "", auth.Write, topic) {
		return nil
	}
	return req.Response(remoting.NoPermission, "native: not allowed to create or change topic "+topic+" (auth.acl-file)")
}

// mayReadMessage refuses req unless user may read m.
func (x *access) mayReadMessage(user string, req *remoting.Command, m *core.Message) *remoting.Command {
	if x.a == nil || x.a.Allow(user, "", auth.Read, path(m.Topic, m.Subject)) {
		return nil
	}
	return req.Response(remoting.NoPermission, "native: not allowed to read "+path(m.Topic, m.Subject)+" (auth.acl-file)")
}
