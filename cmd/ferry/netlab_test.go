package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netLab is a private network of Linux network namespaces the test makes
// itself: every node is a namespace with one address on a bridge (in a
// namespace of its own), and the test process reaches every node from its
// own namespace through a veth of its own on that bridge. Nothing leaves
// the lab: the addresses are a /24 of 10.0.0.0/8 no route of the machine
// uses. Cut isolates a node from other nodes with blackhole routes inside
// the node's namespace, so the test process still reaches it (a producer
// that can still reach a partitioned master).
type netLab struct {
	t      *testing.T
	id     string // short random suffix of every name
	subnet string // "10.x.y"
	host   string // the test process's address in the lab
	nodes  []string
}

// newNetLab makes a lab of n nodes. It needs root and iproute2; without
// them the test skips with the reason, except under CI=true (which runs as
// root), where it fails.
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "network namespaces need root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "network namespaces need iproute2's ip"
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI=true runs as root with iproute2)", why)
		}
		t.Skipf("skipping the partition test: %s", why)
	}
	l := &netLab{t: t, id: randomHex(3)}
	l.subnet = l.freeSubnet()
	l.host = l.subnet + ".1"
	sw := l.ns("sw")
	t.Cleanup(l.remove)
	l.ip("netns", "add", sw)
	l.ip("-n", sw, "link", "add", "br0", "type", "bridge")
	l.ip("-n", sw, "link", "set", "br0", "up")
	// The test process's own port on the bridge.
	l.ip("link", "add", "fh"+l.id, "type", "veth", "peer", "name", "fp"+l.id)
	l.ip("link", "set", "fp"+l.id, "netns", sw)
	l.ip("-n", sw, "link", "set", "fp"+l.id, "master", "br0", "up")
	l.ip("addr", "add", l.host+"/24", "dev", "fh"+l.id)
	l.ip("link", "set", "fh"+l.id, "up")
	for i := range n {
		name := l.ns(fmt.Sprint("n", i))
		port := fmt.Sprintf("f%d%s", i, l.id)
		l.ip("netns", "add", name)
		l.ip("-n", name, "link", "set", "lo", "up")
		l.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name)
		l.ip("link", "set", port, "netns", sw)
		l.ip("-n", sw, "link", "set", port, "master", "br0", "up")
		l.ip("-n", name, "addr", "add", l.Addr(i)+"/24", "dev", "eth0")
		l.ip("-n", name, "link", "set", "eth0", "up")
		l.nodes = append(l.nodes, name)
	}
	return l
}

// Addr is node i's address.
func (l *netLab) Addr(i int) string { return fmt.Sprintf("%s.%d", l.subnet, 10+i) }

// Command runs bin with args inside node i's namespace.
func (l *netLab) Command(i int, bin string, args ...string) []string {
	return append([]string{"netns", "exec", l.nodes[i], bin}, args...)
}

// Cut drops node i's traffic to the nodes of others (both ways: what it
// sends them is dropped, and so are its answers to them); the test
// process still reaches it.
func (l *netLab) Cut(i int, others ...int) {
	for _, o := range others {
		l.ip("-n", l.nodes[i], "route", "add", "blackhole", l.Addr(o)+"/32")
		l.ip("-n", l.nodes[o], "route", "add", "blackhole", l.Addr(i)+"/32")
	}
}

// Heal undoes every Cut of node i.
func (l *netLab) Heal(i int, others ...int) {
	for _, o := range others {
		l.ip("-n", l.nodes[i], "route", "del", "blackhole", l.Addr(o)+"/32")
		l.ip("-n", l.nodes[o], "route", "del", "blackhole", l.Addr(i)+"/32")
	}
}

func (l *netLab) ns(what string) string { return "ferry-" + l.id + "-" + what }

// freeSubnet picks a 10.x.y /24 that no address or route of the machine
// touches.
func (l *netLab) freeSubnet() string {
	out, _ := exec.Command("ip", "-o", "route", "show", "table", "all").CombinedOutput()
	addrs, _ := exec.Command("ip", "-o", "addr").CombinedOutput()
	used := string(out) + string(addrs)
	for range 100 {
		x, _ := rand.Int(rand.Reader, big.NewInt(200))
		y, _ := rand.Int(rand.Reader, big.NewInt(250))
		if a := 20 + x.Int64(); !strings.Contains(used, fmt.Sprintf(" 10.%d.", a)) {
			return fmt.Sprintf("10.%d.%d", a, 1+y.Int64())
		}
	}
	l.t.Fatal("no free 10.x.y/24 for the network lab")
	return ""
}

func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the lab's namespaces (their veths go with them) and the
// test process's veth.
func (l *netLab) remove() {
	exec.Command("ip", "link", "del", "fh"+l.id).Run()
	for _, n := range append(l.nodes, l.ns("sw")) {
		exec.Command("ip", "netns", "del", n).Run()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
