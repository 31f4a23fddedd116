package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// Admin creates topics and describes topics and consumer groups across the
// brokers the NameServers know. It backs ferry topic and ferry group.
type Admin struct {
	opts options
	pool *pool
}

// NewAdmin makes an Admin. It takes WithNameServers, WithLogger and the
// timeouts.
func NewAdmin(opts ...Option) (*Admin, error) {
	o := buildOptions(opts)
	if len(o.errs) > 0 {
		return nil, o.errs[0]
	}
	return &Admin{opts: o, pool: newPool(&o)}, nil
}

// Close closes the Admin's connections.
func (a *Admin) Close() error { return a.pool.close() }

// nameServer asks the NameServers in turn until one answers.
func (a *Admin) nameServer(ctx context.Context, req func() *remoting.Command) (*remoting.Command, error) {
	var errs []error
	for _, ns := range a.opts.nameServers {
		ctx, cancel := context.WithTimeout(ctx, a.opts.requestTimeout)
		resp, err := a.pool.call(ctx, ns, req())
		cancel()
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: %w", ErrNoNameServer, errors.Join(errs...))
}

// Brokers returns the master address of every broker, by name.
func (a *Admin) Brokers(ctx context.Context) (map[string]string, error) {
	resp, err := a.nameServer(ctx, func() *remoting.Command { return remoting.NewRequest(remoting.GetBrokerClusterInfo, nil, nil) })
	if err != nil {
		return nil, err
	}
	var ci remoting.ClusterInfo
	if err := json.Unmarshal(resp.Body, &ci); err != nil {
		return nil, fmt.Errorf("client: cluster info: %w", err)
	}
	out := map[string]string{}
	for name, bd := range ci.BrokerAddrTable {
		if addr, ok := bd.BrokerAddrs[0]; ok && remoting.HasListener(addr) {
			out[name] = addr
		}
	}
	return out, nil
}

// BrokerInfo is one registered broker, as ClusterBrokers lists it.
type BrokerInfo struct {
	Cluster string
	Name    string
	ID      int64 // 0: the master of its name; others are replicas
	// Addr is where clients reach it; "" when it has no native listener
	// (it registered remoting.NoListenerAddr).
	Addr string
	// LastSeen is the latest registration a NameServer heard from it;
	// zero when no NameServer says.
	LastSeen time.Time
	// NameServers are those that list it.
	NameServers []string
}

// Role is "master" for broker id 0, "replica" otherwise.
func (b BrokerInfo) Role() string {
	if b.ID == 0 {
		return "master"
	}
	return "replica"
}

// ClusterBrokers lists the brokers registered with the NameServers, every
// one asked: by cluster, name and id. A broker that some NameServers list
// and others do not (it was refused by them, or cannot reach them) says
// which do. The error names the NameServers that did not answer; the list
// holds what the others said.
func (a *Admin) ClusterBrokers(ctx context.Context) ([]BrokerInfo, error) {
	type key struct {
		cluster, name string
		id            int64
		addr          string
	}
	byKey := map[key]*BrokerInfo{}
	var errs []error
	answered := 0
	for _, ns := range a.opts.nameServers {
		cctx, cancel := context.WithTimeout(ctx, a.opts.requestTimeout)
		resp, err := a.pool.call(cctx, ns, remoting.NewRequest(remoting.GetBrokerClusterInfo, nil, nil))
		cancel()
		var ci remoting.ClusterInfo
		if err == nil {
			if err = json.Unmarshal(resp.Body, &ci); err != nil {
				err = fmt.Errorf("cluster info: %w", err)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("NameServer %s: %w", ns, err))
			continue
		}
		answered++
		for name, bd := range ci.BrokerAddrTable {
			for id, addr := range bd.BrokerAddrs {
				k := key{bd.Cluster, name, id, addr}
				b := byKey[k]
				if b == nil {
					b = &BrokerInfo{Cluster: bd.Cluster, Name: name, ID: id}
					if remoting.HasListener(addr) {
						b.Addr = addr
					}
					byKey[k] = b
				}
				b.NameServers = append(b.NameServers, ns)
				if ms, ok := ci.LastSeen[addr]; ok && ms > 0 {
					if t := time.UnixMilli(ms); t.After(b.LastSeen) {
						b.LastSeen = t
					}
				}
			}
		}
	}
	out := make([]BrokerInfo, 0, len(byKey))
	for _, b := range byKey {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.Cluster != y.Cluster {
			return x.Cluster < y.Cluster
		}
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		if x.ID != y.ID {
			return x.ID < y.ID
		}
		return x.Addr < y.Addr
	})
	if len(errs) > 0 {
		err := errors.Join(errs...)
		if answered == 0 {
			err = fmt.Errorf("%w: %w", ErrNoNameServer, err)
		}
		return out, err
	}
	return out, nil
}

// eachBroker calls f for each broker, by name order.
func (a *Admin) eachBroker(ctx context.Context, f func(name, addr string) error) error {
	brokers, err := a.Brokers(ctx)
	if err != nil {
		return err
	}
	if len(brokers) == 0 {
		return fmt.Errorf("%w: no broker is registered", ErrNoRoute)
	}
	names := make([]string, 0, len(brokers))
	for n := range brokers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := f(n, brokers[n]); err != nil {
			return err
		}
	}
	return nil
}

func (a *Admin) call(ctx context.Context, addr string, req *remoting.Command) (*remoting.Command, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.requestTimeout)
	defer cancel()
	return a.pool.call(ctx, addr, req)
}

// CreateTopic creates a topic with queues queues on every broker (or adds
// queues to it).
func (a *Admin) CreateTopic(ctx context.Context, name string, queues int) error {
	_, err := a.CreateTopicOn(ctx, name, queues, nil)
	return err
}

// CreateTopicOn creates a topic with queues queues on the brokers named
// (every broker when none is), or adds queues to it, and returns the
// brokers it is now on. A name no NameServer knows is an error that lists
// the brokers it does know, before any broker is changed.
func (a *Admin) CreateTopicOn(ctx context.Context, name string, queues int, brokers []string) ([]string, error) {
	if err := validTopic(name); err != nil {
		return nil, err
	}
	known, err := a.Brokers(ctx)
	if err != nil {
		return nil, err
	}
	if len(known) == 0 {
		return nil, fmt.Errorf("%w: no broker is registered", ErrNoRoute)
	}
	if len(brokers) == 0 {
		brokers = slices.Collect(maps.Keys(known))
	}
	for _, b := range brokers {
		if _, ok := known[b]; !ok {
			return nil, fmt.Errorf("%w: broker %q is not registered; the NameServers know %s", ErrNoRoute, b,
				strings.Join(slices.Sorted(maps.Keys(known)), ", "))
		}
	}
	sort.Strings(brokers)
	n := strconv.Itoa(queues)
	for _, b := range brokers {
		if _, err := a.call(ctx, known[b], remoting.NewRequest(remoting.UpdateAndCreateTopic, remoting.Pairs(
			"topic", name, "readQueueNums", n, "writeQueueNums", n, "perm", "6", "topicFilterType", "SINGLE_TAG",
		), nil)); err != nil {
			return nil, fmt.Errorf("client: create %s on %s: %w", name, b, err)
		}
	}
	return brokers, nil
}

// Topics lists the topics the NameServers route.
func (a *Admin) Topics(ctx context.Context) ([]string, error) {
	resp, err := a.nameServer(ctx, func() *remoting.Command {
		return remoting.NewRequest(remoting.GetAllTopicListFromNS, nil, nil)
	})
	if err != nil {
		return nil, err
	}
	var list struct {
		TopicList []string `json:"topicList"`
	}
	if err := json.Unmarshal(resp.Body, &list); err != nil {
		return nil, fmt.Errorf("client: topic list: %w", err)
	}
	sort.Strings(list.TopicList)
	return list.TopicList, nil
}

// WaitForRoute returns once the NameServers route topic (brokers register
// on a timer, and at once when a topic appears), or when ctx ends.
func (a *Admin) WaitForRoute(ctx context.Context, topic string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		topics, err := a.Topics(ctx)
		if err == nil && slices.Contains(topics, topic) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("client: no route for %q (last error: %v): %w", topic, err, ctx.Err())
		case <-tick.C:
		}
	}
}

// QueueStats are a queue's offsets on a broker: messages [Min, Max).
type QueueStats struct {
	ID       int
	Min, Max int64
}

// TopicStats describe a topic on one broker.
type TopicStats struct {
	Broker  string
	Name    string       `json:"name"`
	Queues  int          `json:"queues"`
	Created time.Time    `json:"created"`
	Stats   []QueueStats `json:"QueueStats"`
	Rate    float64      // messages per second over the last second
}

// DescribeTopic describes a topic on every broker that has it.
func (a *Admin) DescribeTopic(ctx context.Context, name string) ([]TopicStats, error) {
	var out []TopicStats
	err := a.eachBroker(ctx, func(broker, addr string) error {
		resp, err := a.call(ctx, addr, remoting.NewRequest(remoting.GetTopicStatsInfo, remoting.Pairs("topic", name), nil))
		if errors.Is(err, remoting.ErrTopicNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		ts := TopicStats{Broker: broker}
		if err := json.Unmarshal(resp.Body, &ts); err != nil {
			return fmt.Errorf("client: topic stats from %s: %w", broker, err)
		}
		out = append(out, ts)
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: topic %q", ErrNoRoute, name)
	}
	return out, err
}

// Groups lists the consumer groups the brokers know.
func (a *Admin) Groups(ctx context.Context) ([]string, error) {
	set := map[string]bool{}
	err := a.eachBroker(ctx, func(_, addr string) error {
		resp, err := a.call(ctx, addr, remoting.NewRequest(remoting.GetAllSubscriptionGroupConfig, nil, nil))
		if err != nil {
			return err
		}
		var gs struct {
			Groups []string `json:"groups"`
		}
		if err := json.Unmarshal(resp.Body, &gs); err != nil {
			return fmt.Errorf("client: groups: %w", err)
		}
		for _, g := range gs.Groups {
			set[g] = true
		}
		return nil
	})
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	sort.Strings(out)
	return out, err
}

// GroupStats describe a consumer group on one broker.
type GroupStats struct {
	Broker     string
	Name       string
	MaxRetries int
	Members    []struct {
		ID       string
		Ordered  bool
		LastSeen time.Time
		Queues   []string
	}
	Queues []struct {
		Topic     string
		Queue     int
		Owner     string
		Committed int64
		Max       int64
		Lag       int64
		InFlight  int
	}
}

// DescribeGroup describes a group on every broker that knows it: members,
// and per queue the committed offset, the newest offset and the lag.
func (a *Admin) DescribeGroup(ctx context.Context, group string) ([]GroupStats, error) {
	var out []GroupStats
	err := a.eachBroker(ctx, func(broker, addr string) error {
		resp, err := a.call(ctx, addr, remoting.NewRequest(remoting.GetConsumeStats, remoting.Pairs("consumerGroup", group), nil))
		var re *remoting.Error
		if errors.As(err, &re) && re.Code == remoting.SubscriptionGroupNotExist {
			return nil
		}
		if err != nil {
			return err
		}
		gs := GroupStats{Broker: broker}
		if err := json.Unmarshal(resp.Body, &gs); err != nil {
			return fmt.Errorf("client: group stats from %s: %w", broker, err)
		}
		out = append(out, gs)
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("client: no broker knows group %q", group)
	}
	return out, err
}
