package cluster_test

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/coretest"
)

// resolve opens a broker on dir, resolves the identity with cfg, and
// closes it: one start of a broker.
func resolve(t *testing.T, dir string, cfg cluster.Config) (cluster.Resolution, error) {
	t.Helper()
	b, closeAll, err := coretest.Open(dir, coretest.Options{Core: core.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	state, err := b.State(cluster.StateNamespace)
	if err != nil {
		t.Fatal(err)
	}
	return cluster.Resolve(state, b.DataDir(), cfg)
}

func TestResolveRecordsTheName(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	ra, err := resolve(t, a, cluster.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := resolve(t, b, cluster.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if ra.Source != cluster.FromDerived || rb.Source != cluster.FromDerived || ra.Name == rb.Name {
		t.Fatalf("two data directories, nothing configured: %+v and %+v, want two derived names", ra, rb)
	}
	if ra.Cluster != cluster.DefaultCluster || ra.ID != 0 || ra.Role() != "master" {
		t.Fatalf("defaults: %+v", ra)
	}
	if err := cluster.CheckName("derived", ra.Name); err != nil || !strings.HasPrefix(ra.Name, "broker-") {
		t.Fatalf("derived name %q: %v", ra.Name, err)
	}

	// A restart keeps it.
	again, err := resolve(t, a, cluster.Config{})
	if err != nil || again.Name != ra.Name || again.Source != cluster.FromRecord {
		t.Fatalf("restart: %+v, %v; want %q recorded", again, err, ra.Name)
	}

	// A configured name wins, is recorded, and says what it replaced.
	renamed, err := resolve(t, a, cluster.Config{Name: "broker-x", Cluster: "east"})
	if err != nil || renamed.Name != "broker-x" || renamed.Cluster != "east" || renamed.Source != cluster.FromRenaming || renamed.Previous != ra.Name {
		t.Fatalf("configured over the record: %+v, %v", renamed, err)
	}
	kept, err := resolve(t, a, cluster.Config{})
	if err != nil || kept.Name != "broker-x" || kept.Source != cluster.FromRecord {
		t.Fatalf("restart without configuration after a rename: %+v, %v", kept, err)
	}
	same, err := resolve(t, a, cluster.Config{Name: "broker-x"})
	if err != nil || same.Source != cluster.FromConfig {
		t.Fatalf("configured as recorded: %+v, %v", same, err)
	}

	if _, err := resolve(t, b, cluster.Config{Name: "no/slash"}); err == nil || !strings.Contains(err.Error(), "broker.name") {
		t.Fatalf("a bad configured name: %v", err)
	}
}

func TestDeriveName(t *testing.T) {
	n1 := cluster.DeriveName("Host-1.example.com", "/var/lib/ferry")
	n2 := cluster.DeriveName("host-2.example.com", "/var/lib/ferry")
	n3 := cluster.DeriveName("Host-1.example.com", "/var/lib/ferry2")
	if !strings.HasPrefix(n1, "broker-host-1-") || n1 == n2 || n1 == n3 {
		t.Fatalf("derived %q %q %q", n1, n2, n3)
	}
	if n := cluster.DeriveName("", "/d"); !strings.HasPrefix(n, "broker-host-") {
		t.Fatalf("no host name: %q", n)
	}
}

// FuzzDeriveName: whatever the host is called and wherever the data is, the
// derived name is a valid broker name.
func FuzzDeriveName(f *testing.F) {
	f.Add("host", "/data")
	f.Add("ÿ\x00../..", "")
	f.Add(strings.Repeat("a-", 40), "x")
	f.Fuzz(func(t *testing.T, host, dir string) {
		if err := cluster.CheckName("derived", cluster.DeriveName(host, dir)); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzCheckName: an accepted name is short and holds only name bytes, so
// it fits the NameServers, the logs and remoting.NoListenerAddr.
func FuzzCheckName(f *testing.F) {
	f.Add("broker-a")
	f.Add("a/b")
	f.Add("")
	f.Fuzz(func(t *testing.T, name string) {
		if cluster.CheckName("n", name) != nil {
			return
		}
		if name == "" || len(name) > cluster.MaxNameLen || strings.ContainsAny(name, "/ :\x00\n") {
			t.Fatalf("accepted %q", name)
		}
	})
}
