package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ferrymq/ferry/core"
)

// GroupSummary is a consumer group in the list.
type GroupSummary struct {
	Name        string `json:"name"`
	Mode        string `json:"mode"`
	Members     int    `json:"members"`
	Lag         int64  `json:"lag"`
	DeadLetters int64  `json:"deadLetters"`
}

// Member is a member of a group: one that joined (MQTT, AMQP) or a
// self-rebalancing native client.
type Member struct {
	ID       string    `json:"id"`
	Ordered  bool      `json:"ordered"`
	LastSeen time.Time `json:"lastSeen"`
	Queues   []string  `json:"queues"` // "topic/queue" assigned to it, for members that joined
}

// GroupQueue is a group's progress on one queue.
type GroupQueue struct {
	Topic     string `json:"topic"`
	Queue     int    `json:"queue"`
	Owner     string `json:"owner"`
	Committed int64  `json:"committed"`
	Max       int64  `json:"max"`
	Lag       int64  `json:"lag"`
	InFlight  int    `json:"inFlight"`
}

// Group describes a consumer group.
type Group struct {
	GroupSummary
	MaxRetries      int          `json:"maxRetries"`
	MemberList      []Member     `json:"memberList"`
	Queues          []GroupQueue `json:"queues"`
	DeadLetterTopic string       `json:"deadLetterTopic"`
}

// deadLetterCount is the messages readable in group's dead-letter topic.
func (s *Server) deadLetterCount(group string) int64 {
	lo, hi := s.b.Offsets(core.DeadLetterTopic(group), 0)
	return hi - lo
}

func (s *Server) groupOf(info core.GroupInfo) Group {
	g := Group{
		GroupSummary:    GroupSummary{Name: info.Name, Mode: info.Mode.String(), Members: len(info.Members), DeadLetters: s.deadLetterCount(info.Name)},
		MaxRetries:      info.MaxRetries,
		MemberList:      []Member{},
		Queues:          []GroupQueue{},
		DeadLetterTopic: core.DeadLetterTopic(info.Name),
	}
	for _, m := range info.Members {
		g.MemberList = append(g.MemberList, Member{ID: m.ID, Ordered: m.Ordered, LastSeen: m.LastSeen, Queues: m.Queues})
	}
	for _, q := range info.Queues {
		g.Queues = append(g.Queues, GroupQueue{Topic: q.Topic, Queue: q.Queue, Owner: q.Owner, Committed: q.Committed, Max: q.Max, Lag: q.Lag, InFlight: q.InFlight})
		g.Lag += q.Lag
	}
	return g
}

// groups are the groups user sees.
func (s *Server) groups(user string) []GroupSummary {
	out := []GroupSummary{}
	for _, name := range s.b.Groups() {
		if !s.a.SeesGroup(user, name) {
			continue
		}
		info, err := s.b.Group(name)
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, s.groupOf(info).GroupSummary)
	}
	return out
}

func (s *Server) listGroups(w http.ResponseWriter, _ *http.Request, user string) {
	writeJSON(w, http.StatusOK, s.groups(user))
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("group")
	if !s.a.SeesGroup(user, name) {
		refused(w, user, "see group "+name, "no group line of the ACL grants them a permission on it")
		return
	}
	info, err := s.b.Group(name)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.groupOf(info))
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("group")
	if !s.mayAdmin(w, user, "delete group "+name) {
		return
	}
	if err := s.b.DeleteGroup(name); err != nil {
		writeCoreError(w, err)
		return
	}
	s.changed(r, user, "group deleted", "group", name)
	w.WriteHeader(http.StatusNoContent)
}

// ResetRequest moves a group's offsets: To is "first", "last" or "time"
// (every queue the group reads, Time an RFC 3339 time), or "offset" (one
// queue: Topic, Queue and Offset).
type ResetRequest struct {
	To     string `json:"to"`
	Time   string `json:"time,omitempty"`
	Topic  string `json:"topic,omitempty"`
	Queue  int    `json:"queue,omitempty"`
	Offset int64  `json:"offset,omitempty"`
}

func (s *Server) resetGroup(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("group")
	var req ResetRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !s.mayReset(w, user, name, "reset the offsets of group "+name) {
		return
	}
	var err error
	switch req.To {
	case "first":
		err = s.b.ResetOffsets(name, core.StartFrom{Kind: core.StartFirst})
	case "last":
		err = s.b.ResetOffsets(name, core.StartFrom{Kind: core.StartLast})
	case "time":
		t, perr := time.Parse(time.RFC3339, req.Time)
		if perr != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("time %q: want RFC 3339, e.g. 2025-01-02T15:04:05Z", req.Time))
			return
		}
		err = s.b.ResetOffsets(name, core.StartFrom{Kind: core.StartTime, Time: t})
	case "offset":
		err = s.b.SetOffset(name, req.Topic, req.Queue, req.Offset)
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("to %q: want first, last, time or offset", req.To))
		return
	}
	if err != nil {
		writeCoreError(w, err)
		return
	}
	s.changed(r, user, "group offsets reset", "group", name, "to", req.To, "time", req.Time, "topic", req.Topic, "queue", req.Queue, "offset", req.Offset)
	info, err := s.b.Group(name)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.groupOf(info))
}

// DeadLetters are a page of a group's dead letters.
type DeadLetters struct {
	Messages []Message `json:"messages"`
	Next     int64     `json:"next"` // the offset of the next page
	Min      int64     `json:"min"`
	Max      int64     `json:"max"`
}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("group")
	dlq := core.DeadLetterTopic(name)
	if !s.seesTopic(user, dlq) {
		refused(w, user, "read the dead letters of group "+name, "that needs join on the group")
		return
	}
	offset, max, err := pageOf(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !s.b.HasTopic(dlq) {
		writeJSON(w, http.StatusOK, DeadLetters{Messages: []Message{}})
		return
	}
	res, err := s.b.Read(r.Context(), dlq, 0, offset, core.ReadOptions{Max: max})
	if err != nil {
		writeCoreError(w, err)
		return
	}
	out := DeadLetters{Messages: []Message{}, Next: res.Next, Min: res.Min, Max: res.Max}
	for i := range res.Messages {
		out.Messages = append(out.Messages, s.messageOf(&res.Messages[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// ResendRequest names the dead letters to publish again: the one at
// Offset of the dead-letter queue; those with IDs (a dead letter's id, its
// producer's id or the id first published); a page of at most Max from
// From (a client that shows its progress walks the queue so); or All.
type ResendRequest struct {
	Offset *int64   `json:"offset,omitempty"`
	IDs    []string `json:"ids,omitempty"`
	From   *int64   `json:"from,omitempty"`
	Max    int      `json:"max,omitempty"`
	All    bool     `json:"all,omitempty"`
}

// Resent says how many dead letters were published again; after a page
// (from), Next is where the next page starts and Max the queue's end.
type Resent struct {
	Resent int   `json:"resent"`
	Next   int64 `json:"next,omitempty"`
	Max    int64 `json:"max,omitempty"`
}

// resendBatch is the most dead letters one core call resends.
const resendBatch = 256

func (s *Server) resend(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("group")
	var req ResendRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if n := btoi(req.All) + btoi(req.Offset != nil) + btoi(len(req.IDs) > 0) + btoi(req.From != nil); n != 1 {
		writeError(w, http.StatusBadRequest, errors.New(`say which dead letters, one way: {"offset": N}, {"ids": [ID, …]}, {"from": N, "max": M} or {"all": true}`))
		return
	}
	if !s.mayReset(w, user, name, "resend the dead letters of group "+name) {
		return
	}
	ctx := context.WithoutCancel(r.Context()) // a resend half done by a closed browser tab is still logged
	var n int
	var err error
	switch {
	case len(req.IDs) > 0:
		s.resendIDs(w, r, user, name, req.IDs)
		return
	case req.From != nil:
		max := req.Max
		if max <= 0 || max > resendBatch {
			max = resendBatch
		}
		n, next, err := s.b.ResendDeadLetters(ctx, name, *req.From, max)
		if n > 0 {
			s.changed(r, user, "dead letters resent", "group", name, "count", n, "from", *req.From)
		}
		if err != nil {
			writeCoreError(w, fmt.Errorf("resent %d, then: %w", n, err))
			return
		}
		_, hi := s.b.Offsets(core.DeadLetterTopic(name), 0)
		writeJSON(w, http.StatusOK, Resent{Resent: n, Next: next, Max: hi})
		return
	case req.Offset != nil:
		res, rerr := s.b.Read(ctx, core.DeadLetterTopic(name), 0, *req.Offset, core.ReadOptions{Max: 1})
		if rerr != nil || len(res.Messages) == 0 || res.Messages[0].QueueOffset != *req.Offset {
			writeError(w, http.StatusNotFound, fmt.Errorf("no dead letter of group %s at offset %d (readable: %d..%d)", name, *req.Offset, res.Min, res.Max-1))
			return
		}
		n, _, err = s.b.ResendDeadLetters(ctx, name, *req.Offset, 1)
	default:
		from, hi := s.b.Offsets(core.DeadLetterTopic(name), 0)
		for from < hi && err == nil {
			var k int
			k, from, err = s.b.ResendDeadLetters(ctx, name, from, resendBatch)
			n += k
			if k == 0 {
				break
			}
		}
	}
	if n > 0 {
		s.changed(r, user, "dead letters resent", "group", name, "count", n)
	}
	if err != nil {
		writeCoreError(w, fmt.Errorf("resent %d, then: %w", n, err))
		return
	}
	writeJSON(w, http.StatusOK, Resent{Resent: n})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// resendIDs resends the dead letters of group with the ids given (each a
// dead letter's id, its producer's id or the id first published), each
// once: the dead-letter queue is read once from its start. An id found
// nowhere is a 404 naming it, and nothing is resent.
func (s *Server) resendIDs(w http.ResponseWriter, r *http.Request, user, group string, ids []string) {
	ctx := context.WithoutCancel(r.Context())
	dlq := core.DeadLetterTopic(group)
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	found := map[string]bool{}
	var offsets []int64
	from, hi := s.b.Offsets(dlq, 0)
	for from < hi {
		res, err := s.b.Read(ctx, dlq, 0, from, core.ReadOptions{Max: resendBatch})
		if err != nil {
			writeCoreError(w, err)
			return
		}
		for i := range res.Messages {
			m := s.messageOf(&res.Messages[i])
			hit := false
			for _, id := range []string{m.ID, m.ProducerID, m.OriginalID} {
				if id != "" && want[id] {
					found[id], hit = true, true
				}
			}
			if hit {
				offsets = append(offsets, m.QueueOffset)
			}
		}
		if res.Next <= from {
			break
		}
		from = res.Next
	}
	var missing []string
	for _, id := range ids {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("no dead letter of group %s has the id %s", group, strings.Join(missing, ", ")))
		return
	}
	n := 0
	for _, off := range offsets {
		k, _, err := s.b.ResendDeadLetters(ctx, group, off, 1)
		n += k
		if err != nil {
			s.changed(r, user, "dead letters resent", "group", group, "count", n)
			writeCoreError(w, fmt.Errorf("resent %d, then: %w", n, err))
			return
		}
	}
	s.changed(r, user, "dead letters resent", "group", group, "count", n, "ids", ids)
	writeJSON(w, http.StatusOK, Resent{Resent: n})
}
