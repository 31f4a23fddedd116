package native

import (
	"encoding/json"
	"fmt"

	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/remoting"
)

// RocketMQ's expression types (SubscriptionData.expressionType). An empty
// type is TAG.
const (
	exprTag   = "TAG"
	exprSQL92 = "SQL92"
)

// parseSubscription parses a subscription's expression by its type: a tag
// list (or any route.ParseFilter expression) for TAG, a SQL92 selector on
// the message's properties for SQL92.
func parseSubscription(expr, typ string) (route.Filter, error) {
	switch typ {
	case "", exprTag:
		return route.ParseFilter(expr)
	case exprSQL92:
		return route.ParseSQL92(expr)
	}
	return route.Filter{}, fmt.Errorf("expression type %q is not supported: %s or %s", typ, exprTag, exprSQL92)
}

// heartbeatSub is one subscription of a heartbeat (RocketMQ's
// SubscriptionData), the parts Ferry uses.
type heartbeatSub struct {
	Topic          string `json:"topic"`
	SubString      string `json:"subString"`
	ExpressionType string `json:"expressionType"`
}

// sqlSubscriptions parses a heartbeating group's SQL92 subscriptions, by
// topic. A pull that does not carry its subscription (RocketMQ's clients
// send it only with postSubscriptionWhenPull, and the Go client sends it
// typed TAG) is filtered by the group's: the broker, not the client,
// evaluates a SQL92 filter. An expression that does not parse leaves its
// group out of the heartbeat (the heartbeat's other groups are kept), which
// is answered SUBSCRIPTION_PARSE_FAILED naming the group, the topic and
// the fault's position.
func sqlSubscriptions(group string, subs []heartbeatSub) (map[string]route.Filter, error) {
	var out map[string]route.Filter
	for _, sd := range subs {
		if sd.ExpressionType != exprSQL92 {
			continue
		}
		f, err := route.ParseSQL92(sd.SubString)
		if err != nil {
			return nil, fmt.Errorf("group %s, topic %s: SQL92 filter refused: %w", group, sd.Topic, err)
		}
		if out == nil {
			out = map[string]route.Filter{}
		}
		out[sd.Topic] = f
	}
	return out, nil
}

// setSQLSubscriptions records a group's SQL92 subscriptions from its
// latest heartbeat (the group's, as in RocketMQ: its members subscribe
// alike).
func (s *Server) setSQLSubscriptions(group string, subs map[string]route.Filter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if subs == nil {
		delete(s.sqlSubs, group)
		return
	}
	if s.sqlSubs == nil {
		s.sqlSubs = map[string]map[string]route.Filter{}
	}
	s.sqlSubs[group] = subs
}

// forgetSQLSubscriptions drops the SQL92 subscriptions of the groups no
// connection heartbeats for any more. Caller holds s.mu.
func (s *Server) forgetSQLSubscriptions(groups map[string]string) {
	for g := range groups {
		if _, ok := s.sqlSubs[g]; !ok {
			continue
		}
		live := false
		for _, gs := range s.clients {
			if _, ok := gs[g]; ok {
				live = true
				break
			}
		}
		if !live {
			delete(s.sqlSubs, g)
		}
	}
}

// pullFilter is the filter of a pull: its own subscription, or else the
// SQL92 subscription of its group's heartbeat, when it has one for the
// topic and the pull carries none or one typed TAG (the Go client's pulls
// always say TAG).
func (s *Server) pullFilter(req *remoting.Command) (route.Filter, error) {
	expr, typ := req.Ext("subscription"), req.Ext("expressionType")
	if typ != exprSQL92 {
		s.mu.Lock()
		f, ok := s.sqlSubs[req.Ext("consumerGroup")][req.Ext("topic")]
		s.mu.Unlock()
		if ok {
			return f, nil
		}
	}
	return parseSubscription(expr, typ)
}

// checkClientConfig serves CHECK_CLIENT_CONFIG, which RocketMQ's Java
// client sends before it subscribes with a SQL92 filter: the expression is
// parsed, and a bad one refused with its fault's position.
func (s *Server) checkClientConfig(req *remoting.Command) *remoting.Command {
	var body struct {
		Group            string       `json:"group"`
		SubscriptionData heartbeatSub `json:"subscriptionData"`
	}
	if err := json.Unmarshal(req.Body, &body); err != nil {
		return req.Response(remoting.SystemError, "check client config body: "+err.Error())
	}
	sd := body.SubscriptionData
	if _, err := parseSubscription(sd.SubString, sd.ExpressionType); err != nil {
		return req.Response(remoting.SubscriptionParseFailed, fmt.Sprintf("group %s, topic %s: %v", body.Group, sd.Topic, err))
	}
	return req.Response(remoting.Success, "")
}
