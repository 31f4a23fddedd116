package main

import (
	"encoding/hex"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/admin"
	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/controller"
)

// What the commands that ask through the native protocol print with
// -o json: lowerCamelCase keys, as the admin API's.

// queueView is one queue of a topic on a broker.
type queueView struct {
	Broker   string `json:"broker"`
	Queue    int    `json:"queue"`
	Min      int64  `json:"min"`
	Max      int64  `json:"max"`
	Messages int64  `json:"messages"`
}

// topicView is a topic on every broker that has it.
type topicView struct {
	Name   string      `json:"name"`
	Queues []queueView `json:"queues"`
	// Rates are messages per second over the last second, by broker.
	Rates map[string]float64 `json:"rates"`
}

func topicViewOf(name string, stats []client.TopicStats) topicView {
	v := topicView{Name: name, Queues: []queueView{}, Rates: map[string]float64{}}
	for _, ts := range stats {
		for _, q := range ts.Stats {
			v.Queues = append(v.Queues, queueView{Broker: ts.Broker, Queue: q.ID, Min: q.Min, Max: q.Max, Messages: q.Max - q.Min})
		}
		v.Rates[ts.Broker] = ts.Rate
	}
	return v
}

// memberView is a member of a group on a broker: the admin API's member,
// so that both ways of asking print the same keys.
type memberView struct {
	Broker string `json:"broker"`
	admin.Member
}

// groupQueueView is a group's progress on one queue of a broker, as the
// admin API's.
type groupQueueView struct {
	Broker string `json:"broker"`
	admin.GroupQueue
}

// groupView is a group on every broker that knows it.
type groupView struct {
	Name    string           `json:"name"`
	Members []memberView     `json:"members"`
	Queues  []groupQueueView `json:"queues"`
	Lag     int64            `json:"lag"`
}

func groupViewOf(name string, stats []client.GroupStats) groupView {
	v := groupView{Name: name, Members: []memberView{}, Queues: []groupQueueView{}}
	for _, gs := range stats {
		for _, m := range gs.Members {
			v.Members = append(v.Members, memberView{Broker: gs.Broker,
				Member: admin.Member{ID: m.ID, Ordered: m.Ordered, LastSeen: m.LastSeen, Queues: m.Queues}})
		}
		for _, q := range gs.Queues {
			v.Queues = append(v.Queues, groupQueueView{Broker: gs.Broker, GroupQueue: admin.GroupQueue{Topic: q.Topic, Queue: q.Queue,
				Owner: q.Owner, Committed: q.Committed, Max: q.Max, Lag: q.Lag, InFlight: q.InFlight}})
			v.Lag += q.Lag
		}
	}
	return v
}

// brokerView is a broker as the NameServers list it.
type brokerView struct {
	Cluster  string     `json:"cluster"`
	Name     string     `json:"name"`
	ID       int64      `json:"id"`
	Role     string     `json:"role"`
	Addr     string     `json:"addr"`
	LastSeen *time.Time `json:"lastSeen,omitempty"`
	// NameServers are those of --namesrv that list it.
	NameServers []string `json:"nameServers"`
}

func brokerViews(brokers []client.BrokerInfo) []brokerView {
	out := []brokerView{}
	for _, b := range brokers {
		v := brokerView{Cluster: b.Cluster, Name: b.Name, ID: b.ID, Role: b.Role(), Addr: b.Addr, NameServers: b.NameServers}
		if !b.LastSeen.IsZero() {
			t := b.LastSeen.UTC()
			v.LastSeen = &t
		}
		out = append(out, v)
	}
	return out
}

// messageView is a message as the native protocol returns it; the fields
// the admin API's message has are named as there.
type messageView struct {
	ID            string            `json:"id"` // the msgId
	OffsetMsgID   string            `json:"offsetMsgId"`
	Topic         string            `json:"topic"`
	Queue         int               `json:"queue"`
	QueueOffset   int64             `json:"queueOffset"`
	Broker        string            `json:"broker,omitempty"`
	StoreHost     string            `json:"storeHost"`
	Subject       string            `json:"subject"`
	Keys          []string          `json:"keys"`
	Properties    map[string]string `json:"properties"`
	Body          *string           `json:"body,omitempty"` // as text, when it is UTF-8
	BodyHex       string            `json:"bodyHex"`
	BodySize      int               `json:"bodySize"`
	DeliveryCount int               `json:"deliveryCount"`
	BornTime      time.Time         `json:"bornTime"`
	StoreTime     time.Time         `json:"storeTime"`
}

func messageViewOf(m *client.MessageExt) messageView {
	v := messageView{ID: m.ID, OffsetMsgID: m.OffsetMsgID, Topic: m.Topic, Queue: m.QueueID, QueueOffset: m.QueueOffset,
		Broker: m.Broker, StoreHost: m.StoreHost, Subject: m.Tag, Keys: m.Keys, Properties: m.Properties,
		BodyHex: hex.EncodeToString(m.Body), BodySize: len(m.Body), DeliveryCount: m.ReconsumeTimes + 1,
		BornTime: m.BornTime.UTC(), StoreTime: m.StoreTime.UTC()}
	if v.Keys == nil {
		v.Keys = []string{}
	}
	if utf8.Valid(m.Body) {
		s := string(m.Body)
		v.Body = &s
	}
	return v
}

// clusterView is ferry cluster list -o json: the brokers, and the
// replicated groups when --controllers is given.
type clusterView struct {
	Brokers []brokerView            `json:"brokers"`
	Groups  []controller.GroupState `json:"replicatedGroups,omitempty"`
}

// clusterJSON writes ferry cluster list -o json.
func clusterJSON(cmd *cobra.Command) error {
	var v clusterView
	err := withAdmin(cmd, func(a *client.Admin) error {
		brokers, err := a.ClusterBrokers(cmd.Context())
		v.Brokers = brokerViews(brokers)
		return err
	})
	groups, _, gerr := replicatedGroups(cmd)
	v.Groups = groups
	if rerr := render(cmd, v, nil); rerr != nil {
		return rerr
	}
	return errors.Join(err, gerr)
}
