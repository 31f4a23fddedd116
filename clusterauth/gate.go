package clusterauth

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// Why a Gate refuses a request, by index: the first reasons of every
// server's refusal metric. A server with reasons of its own numbers them
// from NumReasons on.
const (
	ReasonUnsigned = iota
	ReasonMalformed
	ReasonBadSignature
	ReasonStale
	ReasonReplay
	ReasonReplayCacheFull
	ReasonNotLoopback
	NumReasons
)

// Reasons are the metric labels of the reasons above, by index.
var Reasons = [NumReasons]string{
	ReasonUnsigned:        "unsigned",
	ReasonMalformed:       "malformed",
	ReasonBadSignature:    "bad_signature",
	ReasonStale:           "stale",
	ReasonReplay:          "replay",
	ReasonReplayCacheFull: "replay_cache_full",
	ReasonNotLoopback:     "not_loopback",
}

// Gate admits a server's cluster requests: signed with the cluster key
// when the server has one, else from a loopback peer only. One rule for
// the NameServer and the controller, so that they refuse alike.
type Gate struct {
	// Verifier checks signatures; nil when the server has no cluster
	// secret, and then only loopback peers are admitted.
	Verifier *Verifier
	// Role names the server in refusals ("NameServer", "controller"), and
	// Sender the peer ("broker", "sender").
	Role, Sender string
	// NoSecret is the refusal of a peer off loopback when Verifier is nil,
	// a format with one %s: the peer's address.
	NoSecret string
}

// Admit reports whether req from peer may be served: signed is true when
// it carried a good signature. When it may not, why says so to the
// operator and reason is its index in Reasons.
func (g *Gate) Admit(peer string, req *remoting.Command, now time.Time) (signed bool, reason int, why string) {
	if g.Verifier == nil {
		if IsLoopback(peer) {
			return false, 0, ""
		}
		return false, ReasonNotLoopback, fmt.Sprintf(g.NoSecret, peer)
	}
	err := g.Verifier.Verify(req, now)
	if err == nil {
		return true, 0, ""
	}
	reason = ReasonMalformed
	for _, r := range []struct {
		err    error
		reason int
	}{
		{ErrUnsigned, ReasonUnsigned},
		{ErrBadSignature, ReasonBadSignature},
		{ErrStale, ReasonStale},
		{ErrReplay, ReasonReplay},
		{ErrReplayCacheFull, ReasonReplayCacheFull},
	} {
		if errors.Is(err, r.err) {
			reason = r.reason
		}
	}
	why = err.Error()
	switch reason {
	case ReasonUnsigned:
		why += " (set the " + g.Role + "'s cluster-secret or cluster-secret-file on the broker too)"
	case ReasonBadSignature:
		why += " (the " + g.Sender + "'s cluster-secret differs from the " + g.Role + "'s)"
	}
	return false, reason, why
}

// IsLoopback reports whether addr, a host:port, is a loopback address.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
