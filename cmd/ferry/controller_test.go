package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymq/ferry/controller"
)

// TestControllerProcesses runs a Raft group of three controllers as
// processes, one inside a NameServer (ferry namesrv --controller) and two
// alone (ferry controller), with a cluster secret; registers a broker
// group; kills the leader with SIGKILL and checks the others elect a
// leader that kept the group's state.
func TestControllerProcesses(t *testing.T) {
	bin := buildFerry(t)
	const secret = "controller-test-secret-0123456789"
	env := []string{"FERRY_CLUSTER_SECRET=" + secret}

	raftPeers := freeRaftPeers(t, 3)
	common := []string{"--raft-peers", raftPeers, "--controller-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", "data"}
	procs := []*ferryProc{
		startFerryEnv(t, bin, env, append([]string{"namesrv", "--controller", "--node-id", "1", "--namesrv-addr", "127.0.0.1:0"}, common...)...),
		startFerryEnv(t, bin, env, append([]string{"controller", "--node-id", "2"}, common...)...),
		startFerryEnv(t, bin, env, append([]string{"controller", "--node-id", "3"}, common...)...),
	}
	addrRE := regexp.MustCompile(`msg="controller listening".* addr=(\S+)`)
	httpRE := regexp.MustCompile(`msg="http listening".* addr=(\S+)`)
	var addrs, https []string
	for i, p := range procs {
		if !p.waitLog("ferry ready", 20*time.Second) {
			t.Fatalf("controller %d did not start:\n%s", i+1, p.log())
		}
		addrs = append(addrs, addrRE.FindStringSubmatch(p.log())[1])
		https = append(https, httpRE.FindStringSubmatch(p.log())[1])
	}
	leader := func(exclude int) int {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for i := range procs {
				if i != exclude && strings.Contains(scrape(t, https[i]), "\nferry_controller_leader 1") {
					return i
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no controller leads")
		return -1
	}
	first := leader(-1)

	c := controller.NewClient(addrs, []byte(secret), nil)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for id := int64(0); id < 2; id++ {
		gs, err := c.Heartbeat(ctx, controller.Heartbeat{Cluster: "C", Group: "g", ID: id, ReplicationAddr: fmt.Sprintf("127.0.0.1:%d", 1000+id)})
		if err != nil {
			t.Fatal(err)
		}
		if gs.MasterID != 0 || gs.Epoch != 1 {
			t.Fatalf("broker %d: %+v, want master 0 of epoch 1", id, gs)
		}
	}
	if _, err := c.AlterInSync(ctx, "g", 0, 1, []int64{1}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := procs[first].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next := leader(first)
	t.Logf("controller %d killed; %d leads after %v", first+1, next+1, time.Since(start).Round(10*time.Millisecond))
	gs, err := c.Heartbeat(ctx, controller.Heartbeat{Cluster: "C", Group: "g", ID: 0, ReplicationAddr: "127.0.0.1:1000"})
	if err != nil {
		t.Fatal(err)
	}
	if gs.MasterID != 0 || gs.Epoch != 1 || fmt.Sprint(gs.InSync) != "[0 1]" {
		t.Fatalf("after the leader was killed: %+v, want master 0 of epoch 1, in-sync [0 1]", gs)
	}
	// Unsigned requests are refused.
	u := controller.NewClient(addrs, nil, nil)
	defer u.Close()
	if _, err := u.Groups(ctx); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned request: %v, want a refusal", err)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// freeRaftPeers is a --raft-peers value for n controllers on loopback.
// Raft peers must know each other's addresses before they start: it takes
// n free ports and gives them back for the processes to listen on.
func freeRaftPeers(t *testing.T, n int) string {
	t.Helper()
	var peers []string
	for i := 1; i <= n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, fmt.Sprintf("%d=%s", i, ln.Addr()))
		ln.Close()
	}
	return strings.Join(peers, ",")
}
