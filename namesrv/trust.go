package namesrv

import (
	"time"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/remoting"
)

// Why a REGISTER_BROKER or UNREGISTER_BROKER is refused: the reason label
// of ferry_namesrv_refused_total, by index. The first are the cluster
// gate's (clusterauth.Reasons); the last two are the registry's own.
const (
	refuseConflict = clusterauth.NumReasons + iota
	refuseNotOwner
	numRefuseReasons
)

// refuseReasons are the labels, by index.
var refuseReasons = func() (l [numRefuseReasons]string) {
	copy(l[:], clusterauth.Reasons[:])
	l[refuseConflict] = "conflict"
	l[refuseNotOwner] = "not_owner"
	return l
}()

// refusalLogEvery is how often, at most, a refusal of one reason is logged;
// the line says how many were not.
const refusalLogEvery = 10 * time.Second

// prove checks that req, a REGISTER_BROKER or UNREGISTER_BROKER, comes from
// a broker of the cluster: signed with the cluster key when the NameServer
// has one (signed is then true), else from a loopback peer.
func (s *Server) prove(c *remoting.Conn, req *remoting.Command) (signed bool, ref *refusal) {
	signed, reason, why := s.gate.Admit(c.RemoteAddr(), req, time.Now())
	if why != "" {
		return false, &refusal{reason, why}
	}
	return signed, nil
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
