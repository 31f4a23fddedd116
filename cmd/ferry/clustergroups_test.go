package main

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/controller"
)

// The groups' table: the master's row, a replica's lag behind the
// master's log end, a broker not heard from since the leader took over,
// a group without a master.
func TestWriteGroups(t *testing.T) {
	now := time.Now()
	groups := []controller.GroupState{
		{Group: "orders", Cluster: "east", Epoch: 4, MasterID: 1, MasterNativeAddr: "10.0.0.2:10911", InSync: []int64{0, 1},
			Brokers: []controller.BrokerState{
				{ID: 0, NativeAddr: "10.0.0.1:10911", ReplicationAddr: "10.0.0.1:10912", LogEnd: 900, LastSeen: now.Add(-time.Second), Alive: true},
				{ID: 1, NativeAddr: "10.0.0.2:10911", ReplicationAddr: "10.0.0.2:10912", LogEnd: 1000, LastSeen: now, Alive: true},
				{ID: 2, NativeAddr: "10.0.0.3:10911", ReplicationAddr: "10.0.0.3:10912"},
			}},
		{Group: "lonely", Cluster: "east", Epoch: 2, MasterID: -1, InSync: nil},
	}
	var out bytes.Buffer
	if err := writeGroups(&out, groups, now); err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			rows[f[0]+" "+f[1]] = f
		}
	}
	want := map[string]string{
		"orders east":   "orders east 4 1 10.0.0.2:10911 0,1",
		"lonely east":   "lonely east 2 none - -",
		"orders 0":      "orders 0 replica yes 900 100 yes 1s ago 10.0.0.1:10911 10.0.0.1:10912",
		"orders 1":      "orders 1 master yes 1000 0 yes 0s ago 10.0.0.2:10911 10.0.0.2:10912",
		"orders 2":      "orders 2 replica no - - no - 10.0.0.3:10911 10.0.0.3:10912",
		"GROUP CLUSTER": "GROUP CLUSTER EPOCH MASTER MASTER ADDRESS IN-SYNC",
	}
	for k, w := range want {
		if got := strings.Join(rows[k], " "); got != w {
			t.Errorf("row %q: %q, want %q\n%s", k, got, w, out.String())
		}
	}

	out.Reset()
	if err := writeGroups(&out, nil, now); err != nil || out.String() != "no replicated groups\n" {
		t.Fatalf("no groups: %q, %v", out.String(), err)
	}
}

// ferry cluster list --controllers against a sync group of three real
// brokers: the group's epoch, master and in-sync set, every broker's role
// and log end; a replica killed shows as not alive; without the cluster
// secret the controllers refuse the question and the command says so.
func TestClusterListGroupsBinary(t *testing.T) {
	lab := newGroupLab(t, "listed", "--replication-mode", "sync", "--min-insync-replicas", "2")
	for id := range int64(3) {
		lab.start(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	gs := lab.waitState(ctx, "a master and three in sync", func(gs controller.GroupState) bool { return len(gs.InSync) == 3 })

	list := func(env []string) (string, error) {
		cmd := exec.CommandContext(ctx, lab.bin, "cluster", "list", "--namesrv", strings.Join(lab.nss, ","),
			"--controllers", strings.Join(lab.ctls, ","), "--log-level", "error")
		cmd.Env = append(environWithoutFerry(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	row := func(out string, fields ...string) []string {
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= len(fields) && strings.Join(f[:len(fields)], " ") == strings.Join(fields, " ") {
				return f
			}
		}
		return nil
	}
	// waitList runs the command until ok accepts its output.
	waitList := func(what string, ok func(string) bool) string {
		t.Helper()
		for {
			out, err := list(lab.env)
			if err == nil && ok(out) {
				return out
			}
			select {
			case <-ctx.Done():
				t.Fatalf("ferry cluster list: %s: not within the test's bound: %v\n%s", what, err, out)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	masterID := itoa(gs.MasterID)
	out := waitList("the group with three alive brokers", func(out string) bool {
		for id := range int64(3) {
			if r := row(out, "listed", itoa(id)); r == nil || r[6] != "yes" {
				return false
			}
		}
		return true
	})
	if r := row(out, "listed", "DefaultCluster"); r == nil || r[2] != itoa(gs.Epoch) || r[3] != masterID || r[4] != gs.MasterNativeAddr || r[5] != "0,1,2" {
		t.Fatalf("the group's row: %q, want epoch %d, master %s at %s, in sync 0,1,2\n%s", r, gs.Epoch, masterID, gs.MasterNativeAddr, out)
	}
	for id := range int64(3) {
		r := row(out, "listed", itoa(id))
		role := "replica"
		if id == gs.MasterID {
			role = "master"
		}
		if r[2] != role || r[3] != "yes" || r[4] == "-" || r[5] == "-" {
			t.Fatalf("broker %d's row: %q, want role %s, in sync, a log end and a lag\n%s", id, r, role, out)
		}
	}
	// The NameServers' table is still there, with the master as id 0.
	if r := row(out, "DefaultCluster", "listed", "0"); r == nil || r[3] != "master" || r[4] != gs.MasterNativeAddr {
		t.Fatalf("the NameServers' row of the master: %q, want %s\n%s", r, gs.MasterNativeAddr, out)
	}

	replica := (gs.MasterID + 1) % 3
	lab.kill9(replica)
	out = waitList("the killed replica not alive", func(out string) bool {
		r := row(out, "listed", itoa(replica))
		return r != nil && r[6] == "no"
	})
	t.Logf("after kill -9 of replica %d:\n%s", replica, out)

	out, err := list(nil)
	if err == nil || !strings.Contains(out, "replicated groups: controllers "+strings.Join(lab.ctls, ",")) {
		t.Fatalf("without the cluster secret: %v, want an error naming the controllers\n%s", err, out)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
