package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymq/ferry/client"
)

// Many brokers behind the NameServers, as real processes: two NameServers,
// three brokers with their own names, each registered with both. A topic
// created on all three; a producer whose sends spread over every broker; a
// group of three push consumers that gets every message. One broker is
// killed with SIGKILL under load: sends fail over to the others within
// the producer's retries, the NameServers drop it (its connections close),
// the group rebalances onto the remaining queues, and nothing acknowledged
// is lost. Restarted on its data directory it rejoins under its own name at
// both NameServers, and what it acknowledged before the kill (on its disk,
// or in the OS's page cache with async flush) is consumed too. The clients
// use it again within seconds of its return, well before their 30 s route
// refresh: a route that lost a broker is asked for every second.
//
// Delivery is at least once: a message may come twice only when its queue
// changed hands or its broker was killed before the group's offset was
// committed; every message acknowledged to the producer comes at least
// once, and nothing comes that was not sent.
func TestManyBrokersBehindTheNameServers(t *testing.T) {
	bin := buildFerry(t) // skips under -short
	var nss []string
	for range 2 {
		ns := startFerry(t, bin, "namesrv", "--namesrv-addr", "127.0.0.1:0", "--http-addr", "off")
		if !ns.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry namesrv did not start:\n%s", ns.log())
		}
		nss = append(nss, regexp.MustCompile(`msg="namesrv listening" addr=(\S+)`).FindStringSubmatch(ns.log())[1])
	}
	names := []string{"mb-a", "mb-b", "mb-c"}
	dirs := map[string]string{}
	for _, n := range names {
		dirs[n] = filepath.Join(t.TempDir(), n)
	}
	broker := func(name string) *ferryProc {
		t.Helper()
		p := startFerry(t, bin, "broker", "--namesrv", strings.Join(nss, ","), "--data-dir", dirs[name],
			"--broker-name", name, "--native-addr", "127.0.0.1:0",
			"--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off")
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry broker %s did not start:\n%s", name, p.log())
		}
		return p
	}
	procs := map[string]*ferryProc{}
	for _, n := range names {
		procs[n] = broker(n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// registered reports the brokers each NameServer lists, by name.
	registered := func() []map[string]bool {
		out := make([]map[string]bool, len(nss))
		for i, ns := range nss {
			out[i] = map[string]bool{}
			a, err := client.NewAdmin(client.WithNameServers(ns))
			if err != nil {
				t.Fatal(err)
			}
			bs, _ := a.ClusterBrokers(ctx)
			a.Close()
			for _, b := range bs {
				if b.Addr != "" {
					out[i][b.Name] = true
				}
			}
		}
		return out
	}
	// poll runs ok until it holds, failing the test at ctx's end.
	poll := func(what string, ok func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("%s: not within the test's bound", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	poll("three brokers at both NameServers", func() bool {
		for _, r := range registered() {
			if len(r) != 3 {
				return false
			}
		}
		return true
	})

	const topic, group, queues = "MultiBroker", "multibroker", 4
	admin, err := client.NewAdmin(client.WithNameServers(nss...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	// ferry topic create --brokers puts a topic on the brokers named only,
	// and refuses a name no NameServer knows before changing any broker.
	out, err := exec.Command(bin, "topic", "create", "Pair", "--queues", "2", "--brokers", "mb-c,mb-a",
		"--namesrv", strings.Join(nss, ","), "--log-level", "warn").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "created Pair with 2 queues on mb-a, mb-c") {
		t.Fatalf("topic create --brokers: %v\n%s", err, out)
	}
	if ts, err := admin.DescribeTopic(ctx, "Pair"); err != nil || len(ts) != 2 || ts[0].Broker != "mb-a" || ts[1].Broker != "mb-c" {
		t.Fatalf("Pair is on %+v (%v), want mb-a and mb-c", ts, err)
	}
	out, err = exec.Command(bin, "topic", "create", "Stray", "--brokers", "mb-a,mb-x",
		"--namesrv", strings.Join(nss, ","), "--log-level", "warn").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `broker "mb-x" is not registered`) {
		t.Fatalf("topic create on an unknown broker: %v\n%s", err, out)
	}
	if _, err := admin.DescribeTopic(ctx, "Stray"); err == nil {
		t.Fatal("a refused topic create changed a broker")
	}
	if err := admin.CreateTopic(ctx, topic, queues); err != nil {
		t.Fatal(err)
	}
	// Each NameServer routes the topic to all three brokers.
	for _, ns := range nss {
		pc, err := client.NewPullConsumer(group+"-probe", client.WithNameServers(ns))
		if err != nil {
			t.Fatal(err)
		}
		poll("the topic routed to three brokers at "+ns, func() bool {
			qs, err := pc.Queues(ctx, topic)
			brokers := map[string]bool{}
			for _, q := range qs {
				brokers[q.Broker] = true
			}
			return err == nil && len(brokers) == 3 && len(qs) == 3*queues
		})
		pc.Close()
	}

	// The group: three members. mu guards everything the handlers and the
	// producer record: deliveries by body; per member, whether it got a
	// message from a queue of a broker other than the victim after the kill.
	const victim = "mb-b"
	var mu sync.Mutex
	received := map[string]int{}
	byMember := make([]int, 3)
	var killed time.Time
	var restarted, victimReadAt time.Time // the restart (rejoined at both NameServers); the first message of the victim read after it
	victimOwner := -1                     // the member that owns the victim's queues before the kill
	rebalancedAt := time.Time{}
	from := make([]map[string]bool, 3) // brokers each member got messages from since the last reset
	var members []*client.PushConsumer
	for i := range 3 {
		c, err := client.NewPushConsumer(group, client.WithNameServers(nss...), client.WithConsumeFrom(client.ConsumeFromFirst))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe(topic, "*", func(_ context.Context, m *client.MessageExt) error {
			mu.Lock()
			defer mu.Unlock()
			received[string(m.Body)]++
			byMember[i]++
			if from[i] == nil {
				from[i] = map[string]bool{}
			}
			from[i][m.Broker] = true
			if i == victimOwner && !killed.IsZero() && m.Broker != victim && rebalancedAt.IsZero() {
				rebalancedAt = time.Now()
			}
			if m.Broker == victim && !restarted.IsZero() && victimReadAt.IsZero() {
				victimReadAt = time.Now()
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		members = append(members, c)
	}
	defer func() {
		for _, c := range members {
			c.Close()
		}
	}()

	retries := &retryCounter{}
	p, err := client.NewProducer(client.WithNameServers(nss...), client.WithLogger(slog.New(retries)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// acked holds what a broker acknowledged, by body, with the broker.
	acked := map[string]string{}
	var sendErrs []error
	var firstAckAfterKill, victimAckedAt time.Time // victimAckedAt: the first send the victim acknowledged after its restart
	ackedAfterKill := 0
	seq := 0
	send := func() (client.SendResult, error) {
		mu.Lock()
		body := fmt.Sprintf("m-%06d", seq)
		seq++
		mu.Unlock()
		res, err := p.Send(ctx, &client.Message{Topic: topic, Body: []byte(body)})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			sendErrs = append(sendErrs, err)
			return res, err
		}
		acked[body] = res.Broker
		if res.Broker == victim && !restarted.IsZero() && victimAckedAt.IsZero() {
			victimAckedAt = time.Now()
		}
		if !killed.IsZero() {
			if firstAckAfterKill.IsZero() {
				firstAckAfterKill = time.Now()
			}
			ackedAfterKill++
		}
		return res, nil
	}
	// consumedAll reports whether every message acknowledged by a broker
	// for which want holds came.
	consumedAll := func(want func(broker string) bool) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for b, br := range acked {
				if want(br) && received[b] == 0 {
					return false
				}
			}
			return true
		}
	}
	anyBroker := func(string) bool { return true }
	// dups counts the deliveries past the first; mu held.
	dups := func() int {
		n := 0
		for _, k := range received {
			n += k - 1
		}
		return n
	}

	// Before the kill: the sends spread over every broker's queues.
	for range 300 {
		if _, err := send(); err != nil {
			t.Fatalf("send before the kill: %v", err)
		}
	}
	stats, err := admin.DescribeTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	perBroker := map[string]int64{}
	for _, ts := range stats {
		for _, q := range ts.Stats {
			perBroker[ts.Broker] += q.Max
		}
	}
	for _, n := range names {
		if perBroker[n] == 0 {
			t.Fatalf("no message stored on %s: %v", n, perBroker)
		}
	}
	poll("the messages before the kill consumed", consumedAll(anyBroker))
	mu.Lock()
	for i, n := range byMember {
		if n == 0 {
			t.Fatalf("member %d got nothing: every member owns a broker's queues", i)
		}
	}
	mu.Unlock()
	t.Logf("before the kill: 300 messages, stored per broker %v, delivered per member %v, %d duplicates (members joining)",
		perBroker, byMember, dups())
	// The group settles: each member owns one broker's four queues (the
	// queues sorted by broker, then id, in even ranges).
	poll("the group settled on one broker per member", func() bool {
		mu.Lock()
		clear(from)
		mu.Unlock()
		for range 30 {
			if _, err := send(); err != nil {
				t.Fatalf("send before the kill: %v", err)
			}
		}
		poll("the messages before the kill consumed", consumedAll(anyBroker))
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]bool{}
		for i, f := range from {
			if len(f) != 1 {
				return false
			}
			for b := range f {
				seen[b] = true
				if b == victim {
					victimOwner = i
				}
			}
		}
		return len(seen) == 3
	})
	mu.Lock()
	dupsBefore := dups()
	mu.Unlock()

	// The kill, under load: a producer goroutine sends throughout.
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for {
			select {
			case <-stopLoad:
				return
			default:
			}
			send()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			close(stopLoad)
			<-loadDone
		}
	}
	defer stop()
	loaded := func(n int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= n }
	}
	poll("sends under load", loaded(400))
	mu.Lock()
	killed = time.Now()
	errsAtKill := len(sendErrs)
	retriedAtKill := retries.n.Load()
	mu.Unlock()
	if err := procs[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	procs[victim].wait(t, 10*time.Second)
	dropped := poll("the killed broker gone from both NameServers", func() bool {
		for _, r := range registered() {
			if r[victim] || len(r) != 2 {
				return false
			}
		}
		return true
	}) + time.Since(killed)
	// The group rebalances: the member that owned only the victim's queues
	// gets messages of the queues left.
	poll("the group rebalanced onto the remaining queues", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !rebalancedAt.IsZero()
	})
	mu.Lock()
	rebalanced := rebalancedAt.Sub(killed)
	mu.Unlock()
	mu.Lock()
	more := len(acked) + 200
	mu.Unlock()
	poll("more sends after the rebalance", loaded(more))
	stop()
	mu.Lock()
	killErrs := len(sendErrs) - errsAtKill
	retried := retries.n.Load() - retriedAtKill
	failover := firstAckAfterKill.Sub(killed)
	afterKill := ackedAfterKill
	mu.Unlock()
	// Nothing acknowledged by a broker that stayed up is lost.
	poll("what the brokers left acknowledged consumed", consumedAll(func(b string) bool { return b != victim }))
	mu.Lock()
	dupsKill := dups() - dupsBefore
	mu.Unlock()
	if retried == 0 {
		t.Errorf("no send was retried after the kill: the load did not reach the killed broker")
	}
	t.Logf("the kill: %d sends acknowledged after it (%d attempts failed and were retried), %d send errors; first acknowledged send %v after the kill; "+
		"dropped by both NameServers after %v; group rebalanced after %v; %d duplicates (queues changing hands)",
		afterKill, retried, killErrs, failover, dropped, rebalanced, dupsKill)

	// The restart: the broker rejoins under its own name, and what it
	// acknowledged before the kill is consumed.
	procs[victim] = broker(victim)
	rejoined := poll("the restarted broker at both NameServers", func() bool {
		for _, r := range registered() {
			if !r[victim] {
				return false
			}
		}
		return true
	})
	if !strings.Contains(procs[victim].log(), "name_from=") || !strings.Contains(procs[victim].log(), "broker="+victim) {
		t.Fatalf("the restarted broker's identity:\n%s", procs[victim].log())
	}
	mu.Lock()
	restarted = time.Now()
	mu.Unlock()
	drained := poll("everything acknowledged consumed", consumedAll(anyBroker))
	t.Logf("the restart: at both NameServers after %v; everything consumed %v later", rejoined, drained)
	// The clients use it again: the producer sends to it and the group
	// reads its queues, within seconds, not at their next route refresh
	// (every 30 s). The bound is generous; it takes about a second.
	const backWithin = 15 * time.Second
	back := poll("the restarted broker written and read again", func() bool {
		mu.Lock() // the group's handlers write victimReadAt
		late, ackedAt, readAt := time.Since(restarted) > backWithin, victimAckedAt, victimReadAt
		mu.Unlock()
		if late {
			t.Fatalf("the restarted broker not used again within %v of rejoining: acknowledged a send at %v, read at %v",
				backWithin, ackedAt, readAt)
		}
		send()
		mu.Lock()
		defer mu.Unlock()
		return !victimAckedAt.IsZero() && !victimReadAt.IsZero()
	})
	mu.Lock()
	t.Logf("the restarted broker used again: a send acknowledged %v and a message read %v after it rejoined (checked for %v)",
		victimAckedAt.Sub(restarted), victimReadAt.Sub(restarted), back)
	mu.Unlock()

	// What the victim acknowledged before the kill is on its disk: a group
	// that starts now, from the first message, gets all of it, and every
	// other message acknowledged.
	late, err := client.NewPushConsumer(group+"-late", client.WithNameServers(nss...), client.WithConsumeFrom(client.ConsumeFromFirst))
	if err != nil {
		t.Fatal(err)
	}
	lateGot := map[string]bool{}
	if err := late.Subscribe(topic, "*", func(_ context.Context, m *client.MessageExt) error {
		mu.Lock()
		defer mu.Unlock()
		lateGot[string(m.Body)] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := late.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	poll("a new group reads everything acknowledged, the restarted broker's too", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for b := range acked {
			if !lateGot[b] {
				return false
			}
		}
		return true
	})

	mu.Lock()
	defer mu.Unlock()
	for b := range received {
		// A send that failed may still have been stored: it was sent.
		var i int
		if _, err := fmt.Sscanf(b, "m-%06d", &i); err != nil || i >= seq {
			t.Errorf("received %q, never sent", b)
		}
	}
	var victimAcked int
	for _, br := range acked {
		if br == victim {
			victimAcked++
		}
	}
	t.Logf("%d messages acknowledged (%d by %s), %d send errors, %d distinct received, %d duplicates",
		len(acked), victimAcked, victim, len(sendErrs), len(received), dups())
	for _, n := range names {
		if strings.Contains(procs[n].log(), "level=ERROR") {
			t.Errorf("%s logged an error:\n%s", n, procs[n].log())
		}
	}
}

// retryCounter is a slog handler counting the producer's retried sends.
type retryCounter struct{ n atomic.Int64 }

func (r *retryCounter) Enabled(context.Context, slog.Level) bool { return true }
func (r *retryCounter) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message == "client: send failed; retrying" {
		r.n.Add(1)
	}
	return nil
}
func (r *retryCounter) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *retryCounter) WithGroup(string) slog.Handler      { return r }
