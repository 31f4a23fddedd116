package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/remoting"
)

// Why a request is refused: the reason label of
// ferry_controller_refused_total, by index (the cluster gate's reasons).
var refuseReasons = clusterauth.Reasons

// stats are the controller's counters, under Server.mu.
type stats struct {
	leaderChanges    int64 // times this node became the acting leader
	elections        int64 // masters elected from the in-sync set while this node led
	electionsUnclean int64 // masters elected outside it (controller.unclean-election)
	masterless       int   // groups whose master is silent with no candidate, at the latest janitor pass
	refused          [len(refuseReasons)]int64
}

// serve answers one request: authorised first (signed with the cluster
// key, or from loopback without one), then served by the acting leader
// only; a follower answers CodeNotLeader with the leader's address.
func (s *Server) serve(_ context.Context, c *remoting.Conn, req *remoting.Command) *remoting.Command {
	if req.IsOneway() {
		return nil
	}
	if _, reason, why := s.gate.Admit(c.RemoteAddr(), req, time.Now()); why != "" {
		return s.refuse(c, req, reason, why)
	}
	switch req.Code {
	case CodeHeartbeat, CodeAlterInSync, CodeGetGroups:
	default:
		return req.Response(remoting.RequestCodeNotSupported, fmt.Sprintf("request code %d not supported by the controller", req.Code))
	}
	if !s.IsLeader() {
		return s.notLeader(req)
	}
	var answer any
	var err error
	switch req.Code {
	case CodeHeartbeat:
		var hb Heartbeat
		if err := decode(req, &hb); err != nil {
			return req.Response(CodeInvalidRequest, "controller: heartbeat: "+err.Error())
		}
		answer, err = s.heartbeat(hb)
	case CodeAlterInSync:
		var r alterRequest
		if err := decode(req, &r); err != nil {
			return req.Response(CodeInvalidRequest, "controller: alter in-sync set: "+err.Error())
		}
		answer, err = s.alterInSync(r)
	case CodeGetGroups:
		answer = groupsAnswer{Groups: s.groups()}
	}
	if errors.Is(err, errNotLeader) {
		return s.notLeader(req)
	}
	var rerr *remoting.Error
	if errors.As(err, &rerr) {
		return req.Response(rerr.Code, rerr.Remark)
	}
	if err != nil {
		return req.Response(remoting.SystemError, err.Error())
	}
	return req.JSONResponse(answer)
}

func (s *Server) notLeader(req *remoting.Command) *remoting.Command {
	resp := req.Response(CodeNotLeader, "controller: not the leader")
	resp.Set(FieldLeaderAddr, s.leaderAddr())
	return resp
}

// refuse answers NO_PERMISSION naming the cause, counts it and logs it, at
// most one line a reason every 10 s.
func (s *Server) refuse(c *remoting.Conn, req *remoting.Command, reason int, why string) *remoting.Command {
	s.mu.Lock()
	s.stats.refused[reason]++
	s.mu.Unlock()
	log, suppressed := s.refusalLog[reason].Allow()
	if log {
		s.logger.Warn("controller: refused a request", "reason", refuseReasons[reason], "code", req.Code, "peer", c.RemoteAddr(),
			"why", why, "not_logged_since", suppressed)
	}
	return req.Response(remoting.NoPermission, "controller: refused: "+why)
}
