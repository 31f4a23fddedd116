package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymq/ferry/client"
)

// nativeCrashRounds is how many times TestNativeSendsSurviveKill9 kills
// ferry: a short form here, ten with the soak build tag.
var nativeCrashRounds = 3

// Durability of native sends, tested by crashing: SDK producers on several
// goroutines load a topic with sync Sends; Ferry, in the default async
// flush, is killed (kill -9) mid-load; it restarts on the same data, and
// every queue, read from its first offset, holds every message a Send
// acknowledged, of this round and the rounds before. An acknowledged
// append is in the files, which a crash of the process cannot lose.
func TestNativeSendsSurviveKill9(t *testing.T) {
	bin := buildFerry(t)
	data := filepath.Join(t.TempDir(), "data")
	ns, native := freeAddr(t), freeAddr(t)
	start := func() *ferryProc {
		p := startFerry(t, bin, "serve", "--data-dir", data, "--flush", "async", "--namesrv-addr", ns, "--native-addr", native,
			"--mqtt-addr", "off", "--mqtt-ws-addr", "off", "--http-addr", "off")
		if !p.waitLog(`msg="ferry ready"`, time.Minute) {
			t.Fatalf("ferry did not start:\n%s", p.log())
		}
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(60+60*nativeCrashRounds)*time.Second)
	defer cancel()

	const topic = "crash"
	p := start()
	admin, err := client.NewAdmin(client.WithNameServers(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	createTopicOnceRegistered(ctx, t, admin, ns, topic, 4)

	acked := map[string]bool{} // over all rounds, by body
	for round := range nativeCrashRounds {
		n := sendUntilKilled(ctx, t, p, ns, topic, round, acked)
		p.wait(t, 10*time.Second)
		p = start()
		waitRoute(t, ns, topic)
		got := readAllQueues(ctx, t, ns, topic)
		var lost []string
		for body := range acked {
			if !got[body] {
				lost = append(lost, body)
			}
		}
		if len(lost) > 0 {
			t.Fatalf("round %d: %d of %d acknowledged messages lost after kill -9 (e.g. %v)", round, len(lost), len(acked), lost[:min(10, len(lost))])
		}
		t.Logf("round %d: %d acknowledged before kill -9, all %d of all rounds there after the restart (%d stored)", round, n, len(acked), len(got))
	}
}

// sendUntilKilled runs four producers of sync Sends on topic, kills p with
// SIGKILL once they have 2,000 acknowledgements, and adds the bodies acked
// to acked. It returns how many this round acknowledged.
func sendUntilKilled(ctx context.Context, t *testing.T, p *ferryProc, ns, topic string, round int, acked map[string]bool) int {
	t.Helper()
	prod, err := client.NewProducer(client.WithNameServers(ns), client.WithSendTimeout(3*time.Second), client.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var mu sync.Mutex
	var n int
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				body := fmt.Sprintf("r%d-w%d-%d", round, w, i)
				if _, err := prod.Send(ctx, &client.Message{Topic: topic, Body: []byte(body)}); err != nil {
					return
				}
				mu.Lock()
				acked[body] = true
				n++
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		done := n >= 2000
		mu.Unlock()
		if done || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	return n
}

// readAllQueues pulls every queue of topic from its first offset to its
// end and returns the bodies it holds.
func readAllQueues(ctx context.Context, t *testing.T, ns, topic string) map[string]bool {
	t.Helper()
	c, err := client.NewPullConsumer("crash-check", client.WithNameServers(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	queues, err := c.Queues(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, q := range queues {
		for off := int64(0); ; {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			res, err := c.Pull(pctx, q, off, 1024)
			cancel()
			if err != nil {
				t.Fatalf("pull %s/%d at %d: %v", q.Broker, q.ID, off, err)
			}
			for _, m := range res.Messages {
				got[string(m.Body)] = true
			}
			off = res.Next
			if off >= res.Max {
				break
			}
		}
	}
	return got
}
