package admin

import (
	"net/http"
	"time"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
)

// What a user may see and change, as the front-ends decide it (docs/auth.md).

// path is the ACL's name of a message: "topic/subject", or the topic.
func path(topic, subject string) string {
	if subject == "" {
		return topic
	}
	return topic + "/" + subject
}

// seesTopic reports whether user may see a topic's queues and offsets:
// read on some of it (or the admin line); a group's retry and
// dead-letter topics are the group's.
func (s *Server) seesTopic(user, topic string) bool {
	if g, ok := core.GroupOf(topic); ok {
		return s.a.SeesGroup(user, g)
	}
	return s.a.Admin(user) || s.a.MayReadSome(user, "", topic)
}

// readsMessage reports whether user may read m: read on its topic/subject,
// or join on the group for a retry or dead-letter topic.
func (s *Server) readsMessage(user string, m *core.Message) bool {
	if g, ok := core.GroupOf(m.Topic); ok {
		return s.a.AllowGroup(user, auth.GroupJoin, g)
	}
	return s.a.Allow(user, "", auth.Read, path(m.Topic, m.Subject))
}

// mayAdmin answers 403 and returns false unless user holds the admin line.
func (s *Server) mayAdmin(w http.ResponseWriter, user, what string) bool {
	if s.a.Admin(user) {
		return true
	}
	refused(w, user, what, "that needs the admin permission (an admin line in the user's section of the ACL file)")
	return false
}

// mayReset answers 403 and returns false unless user may move group's
// offsets and resend its dead letters: admin, or the group's reset
// permission.
func (s *Server) mayReset(w http.ResponseWriter, user, group, what string) bool {
	if s.a.AllowGroup(user, auth.GroupReset, group) {
		return true
	}
	refused(w, user, what, "that needs the admin permission or reset on the group ("+s.a.GroupRefusal(user, auth.GroupReset, group)+")")
	return false
}

// changed logs a change an operator made.
func (s *Server) changed(r *http.Request, user, what string, attrs ...any) {
	s.logger.Info("admin: "+what, append([]any{"user", user, "remote", r.RemoteAddr}, attrs...)...)
}

// Overview is the broker at a glance.
type Overview struct {
	Broker  Identity `json:"broker"`
	DevMode bool     `json:"devMode"`
	Time    string   `json:"time"`
	// Connections are open client connections by protocol (native, mqtt,
	// amqp), for the front-ends that run.
	Connections map[string]int64 `json:"connections"`
	// PublishRate is messages stored per second over the last second, on
	// the user topics the user sees.
	PublishRate float64 `json:"publishRate"`
	Topics      int     `json:"topics"`
	Groups      int     `json:"groups"`
	// Lag is the messages the groups the user sees have yet to consume.
	Lag int64 `json:"lag"`
	// DeadLetters are the messages in those groups' dead-letter topics.
	DeadLetters int64 `json:"deadLetters"`
}

func (s *Server) overview(w http.ResponseWriter, _ *http.Request, user string) {
	o := Overview{Broker: s.id, DevMode: !s.a.ChecksPasswords(), Time: s.now().UTC().Format(time.RFC3339), Connections: s.connections()}
	for _, t := range s.b.Topics() {
		if core.TopicKind(t.Name) == "user" && s.seesTopic(user, t.Name) {
			o.Topics++
			o.PublishRate += t.Rate
		}
	}
	for _, g := range s.groups(user) {
		o.Groups++
		o.Lag += g.Lag
		o.DeadLetters += g.DeadLetters
	}
	writeJSON(w, http.StatusOK, o)
}

// connections reads the front-ends' connection gauges from the metrics.
func (s *Server) connections() map[string]int64 {
	out := map[string]int64{}
	if s.metrics == nil {
		return out
	}
	fams, err := s.metrics.Gather()
	if err != nil {
		s.logger.Debug("admin: gathering metrics", "err", err)
	}
	names := map[string]string{"ferry_native_connections": "native", "ferry_mqtt_connections": "mqtt", "ferry_amqp_connections": "amqp"}
	for _, f := range fams {
		proto, ok := names[f.GetName()]
		if !ok {
			continue
		}
		var n float64
		for _, m := range f.GetMetric() {
			n += m.GetGauge().GetValue()
		}
		out[proto] = int64(n)
	}
	return out
}

// Queue is one queue of a topic: messages [Min, Max) are readable.
type Queue struct {
	ID  int   `json:"id"`
	Min int64 `json:"min"`
	Max int64 `json:"max"`
}

// Topic describes a topic.
type Topic struct {
	Name string `json:"name"`
	// Kind is "user", "retry", "dead-letter", "schedule" or "internal".
	Kind     string  `json:"kind"`
	Queues   []Queue `json:"queues"`
	Messages int64   `json:"messages"` // readable now, over the queues
	Rate     float64 `json:"rate"`     // stored per second, over the last second
}

func topicOf(t core.TopicInfo) Topic {
	out := Topic{Name: t.Name, Kind: core.TopicKind(t.Name), Rate: t.Rate, Queues: []Queue{}}
	for _, q := range t.QueueStats {
		out.Queues = append(out.Queues, Queue{ID: q.ID, Min: q.Min, Max: q.Max})
		out.Messages += q.Max - q.Min
	}
	return out
}

func (s *Server) listTopics(w http.ResponseWriter, r *http.Request, user string) {
	all := r.URL.Query().Get("internal") == "true"
	out := []Topic{}
	for _, t := range s.b.Topics() {
		if (all || core.TopicKind(t.Name) == "user") && s.seesTopic(user, t.Name) {
			out = append(out, topicOf(t))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getTopic(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("topic")
	if !s.seesTopic(user, name) {
		refused(w, user, "see topic "+name, "no read rule of the ACL covers it")
		return
	}
	t, err := s.b.Topic(name)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, topicOf(t))
}

type createTopicRequest struct {
	Name   string `json:"name"`
	Queues int    `json:"queues"` // 0: the broker's default
}

func (s *Server) createTopic(w http.ResponseWriter, r *http.Request, user string) {
	var req createTopicRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !s.mayAdmin(w, user, "create topic "+req.Name) {
		return
	}
	if _, err := s.b.CreateTopic(req.Name, req.Queues); err != nil {
		writeCoreError(w, err)
		return
	}
	s.changed(r, user, "topic created", "topic", req.Name, "queues", req.Queues)
	t, err := s.b.Topic(req.Name)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, topicOf(t))
}

func (s *Server) deleteTopic(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("topic")
	if !s.mayAdmin(w, user, "delete topic "+name) {
		return
	}
	if core.TopicKind(name) != "user" {
		writeError(w, http.StatusBadRequest, errorf("topic %q is the broker's own: delete its group instead", name))
		return
	}
	if err := s.b.DeleteTopic(name); err != nil {
		writeCoreError(w, err)
		return
	}
	s.changed(r, user, "topic deleted", "topic", name)
	w.WriteHeader(http.StatusNoContent)
}
