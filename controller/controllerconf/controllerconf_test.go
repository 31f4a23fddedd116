package controllerconf

import (
	"strings"
	"testing"
	"time"
)

func TestParsePeers(t *testing.T) {
	peers, err := ParsePeers(" 1=10.0.0.1:9879, 2=ctl-2:9879 ,3=[::1]:9879")
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 3 || peers[1] != (Peer{ID: "2", Addr: "ctl-2:9879"}) {
		t.Fatalf("peers %+v", peers)
	}
	for in, want := range map[string]string{
		"1":              "want id=host:port",
		"1=":             "want id=host:port",
		"1=host":         "with a port",
		"1=host:0":       "with a port",
		"1=:9879":        "the host must be one",
		"1=0.0.0.0:9879": "the host must be one",
		"1=a:1,1=b:2":    "appears twice",
		"a b=h:1":        "is not allowed",
		"1=a:1,2=a:2,3=a:3,4=a:4,5=a:5,6=a:6,7=a:7,8=a:8": "at most 7",
	} {
		if _, err := ParsePeers(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePeers(%q): %v, want an error saying %q", in, err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Addrs = "a:1,nope" }, "controller.addrs"},
		{func(c *Config) { c.MasterTimeout = 500 * time.Millisecond }, "controller.master-timeout"},
		{func(c *Config) { c.RaftTimeout = time.Millisecond }, "controller.raft-timeout"},
		{func(c *Config) { c.RaftPeers = "1=a:1"; c.NodeID = "2" }, "controller.node-id"},
		{func(c *Config) { c.Addr = "" }, "controller.addr"},
	} {
		c := Default()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", c, err, tc.want)
		}
	}
	c := Default()
	if _, err := c.CheckServer(); err == nil || !strings.Contains(err.Error(), "--raft-peers") {
		t.Errorf("a server without peers: %v", err)
	}
	c.RaftPeers = "1=a:1,2=b:2,3=c:3"
	if _, err := c.CheckServer(); err == nil || !strings.Contains(err.Error(), "--node-id") {
		t.Errorf("a server without a node id: %v", err)
	}
	c.NodeID = "2"
	if peers, err := c.CheckServer(); err != nil || c.Self(peers).Addr != "b:2" {
		t.Errorf("a server: %v", err)
	}
}
