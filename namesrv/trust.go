package namesrv

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/remoting"
)

// Why a REGISTER_BROKER or UNREGISTER_BROKER is refused: the reason label
// of ferry_namesrv_refused_total, by index.
const (
	refuseUnsigned = iota
	refuseMalformed
	refuseBadSignature
	refuseStale
	refuseReplay
	refuseReplayCacheFull
	refuseNotLoopback
	refuseConflict
	refuseNotOwner
)

var refuseReasons = [...]string{
	refuseUnsigned:        "unsigned",
	refuseMalformed:       "malformed",
	refuseBadSignature:    "bad_signature",
	refuseStale:           "stale",
	refuseReplay:          "replay",
	refuseReplayCacheFull: "replay_cache_full",
	refuseNotLoopback:     "not_loopback",
	refuseConflict:        "conflict",
	refuseNotOwner:        "not_owner",
}

// refusalLogEvery is how often, at most, a refusal of one reason is logged;
// the line says how many were not.
const refusalLogEvery = 10 * time.Second

// prove checks that req, a REGISTER_BROKER or UNREGISTER_BROKER, comes from
// a broker of the cluster: signed with the cluster key when the NameServer
// has one (signed is then true), else from a loopback peer.
func (s *Server) prove(c *remoting.Conn, req *remoting.Command) (signed bool, ref *refusal) {
	if s.verifier == nil {
		if isLoopback(c.RemoteAddr()) {
			return false, nil
		}
		return false, &refusal{refuseNotLoopback, fmt.Sprintf("this NameServer has no cluster secret and accepts brokers only from loopback; "+
			"%s is not (set the same cluster-secret or cluster-secret-file on the NameServer and every broker)", c.RemoteAddr())}
	}
	err := s.verifier.Verify(req, time.Now())
	if err == nil {
		return true, nil
	}
	reason := refuseMalformed
	for _, r := range []struct {
		err    error
		reason int
	}{
		{clusterauth.ErrUnsigned, refuseUnsigned},
		{clusterauth.ErrBadSignature, refuseBadSignature},
		{clusterauth.ErrStale, refuseStale},
		{clusterauth.ErrReplay, refuseReplay},
		{clusterauth.ErrReplayCacheFull, refuseReplayCacheFull},
	} {
		if errors.Is(err, r.err) {
			reason = r.reason
		}
	}
	msg := err.Error()
	switch reason {
	case refuseUnsigned:
		msg += " (set the NameServer's cluster-secret or cluster-secret-file on the broker too)"
	case refuseBadSignature:
		msg += " (the broker's cluster-secret differs from the NameServer's)"
	}
	return false, &refusal{reason, msg}
}

// refuse answers req with NO_PERMISSION and a remark naming the cause,
// counts it, and logs it: at most one line per reason every
// refusalLogEvery, with the number of refusals not logged since.
func (s *Server) refuse(c *remoting.Conn, req *remoting.Command, ref *refusal) *remoting.Command {
	what := "register broker"
	if req.Code == remoting.UnregisterBroker {
		what = "unregister broker"
	}
	s.mu.Lock()
	s.refused[ref.reason]++
	s.mu.Unlock()
	if log, suppressed := s.refusalLimits[ref.reason].Allow(); log {
		s.opts.Logger.Warn("namesrv: refused "+what, "reason", refuseReasons[ref.reason], "peer", c.RemoteAddr(),
			"broker", clip(req.Ext("brokerName")), "addr", clip(req.Ext("brokerAddr")), "why", ref.msg,
			"not_logged_since", suppressed)
	}
	return req.Response(remoting.NoPermission, what+" refused: "+ref.msg)
}

// clip shortens a peer's string for a log line.
func clip(s string) string {
	const max = 128
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
