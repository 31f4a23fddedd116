// Package cluster is the broker's place in a cluster: its identity
// (cluster, broker name, broker id), recorded in the data directory, and
// its registration with the NameServers (Registrar), which every broker
// process makes whatever front-ends it runs. See docs/cluster.md.
package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// DefaultCluster is the cluster a broker joins when none is configured
// (RocketMQ's default too).
const DefaultCluster = "DefaultCluster"

// MaxNameLen bounds a broker or cluster name, in bytes.
const MaxNameLen = 64

// Identity names a broker at the NameServers. Brokers of one name are a
// master (ID 0) and its replicas (ID > 0, serving reads).
type Identity struct {
	Cluster string
	Name    string
	ID      int64
}

// Role is "master" for ID 0, "replica" otherwise.
func (id Identity) Role() string { return Role(id.ID) }

// Role is "master" for broker id 0, "replica" otherwise.
func Role(id int64) string {
	if id == 0 {
		return "master"
	}
	return "replica"
}

// Config is what the configuration says of the identity; "" fields take
// the defaults (Resolve).
type Config struct {
	Cluster string // broker.cluster; "" is DefaultCluster
	Name    string // broker.name; "" is the recorded name, or a derived one
	// ID is the id registered: 0, a master, unless the broker serves as a
	// replica of a replicated group (its broker.id, > 0). A replica's log
	// is its master's copy: Resolve records nothing in it.
	ID int64
}

// CheckName checks a broker or cluster name: 1 to MaxNameLen bytes of
// letters, digits, '-', '_' and '.'. what names the setting in the error.
func CheckName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s: must not be empty", what)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%s %.16q…: %d bytes, want at most %d", what, name, len(name), MaxNameLen)
	}
	for _, c := range []byte(name) {
		if !nameByte(c) {
			return fmt.Errorf("%s %q: %q is not allowed (letters, digits, '-', '_' and '.' are)", what, name, c)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// DeriveName is the name of a broker configured with none, on its first
// start: "broker-", the host's name (its first label, sanitized, at most
// 24 bytes) and six hex digits of a hash of the host's name and the data
// directory's absolute path. Two data directories on one host, or one path
// on two hosts, get different names; the name is recorded, so it stays
// whatever the host is called later.
func DeriveName(hostname, dataDir string) string {
	sum := sha256.Sum256([]byte(hostname + "\x00" + dataDir))
	host, _, _ := strings.Cut(hostname, ".")
	host = sanitize(host, 24)
	if host == "" {
		host = "host"
	}
	return "broker-" + host + "-" + hex.EncodeToString(sum[:3])
}

// sanitize keeps the name bytes of s, lower-cased, others turned into '-',
// at most max bytes, without '-' at either end.
func sanitize(s string, max int) string {
	b := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(b) < max; i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case !nameByte(c) || c == '.':
			c = '-'
		}
		b = append(b, c)
	}
	return strings.Trim(string(b), "-_")
}

// Store is where the identity is recorded: the broker's state documents,
// namespace "cluster" (core.State), written atomically.
type Store interface {
	Load(name string, v any) (bool, error)
	Save(name string, v any) error
}

// StateNamespace and recordDoc name the record of the identity in the
// core's state, which is kept in the broker's log: a copy of the log has
// the broker's name.
const (
	StateNamespace = "cluster"
	recordDoc      = "broker"
)

// record is the document.
type record struct {
	Name string `json:"name"`
}

// Source says where Resolve took the name from.
type Source string

const (
	FromConfig   Source = "configured" // and recorded
	FromRecord   Source = "recorded"   // none configured
	FromDerived  Source = "derived"    // first start, none configured: now recorded
	FromRenaming Source = "renamed"    // configured, differing from the record: the configured wins and is recorded
)

// Resolution is Resolve's answer.
type Resolution struct {
	Identity
	Source Source
	// Previous is the recorded name a configured one replaced.
	Previous string
}

// Resolve settles the broker's identity: the configured name wins, else
// the name recorded in st, else one derived from the host and the data
// directory dir (DeriveName). What is used is
// recorded, so that a restart without configuration keeps it. A recorded
// name that is not a valid name is an error, not something to replace
// silently: the broker's name is what clients and NameServers know it by.
func Resolve(st Store, dir string, cfg Config) (Resolution, error) {
	res := Resolution{Identity: Identity{Cluster: cfg.Cluster, Name: cfg.Name, ID: cfg.ID}}
	if res.Cluster == "" {
		res.Cluster = DefaultCluster
	}
	if err := CheckName("broker.cluster", res.Cluster); err != nil {
		return Resolution{}, err
	}
	if cfg.Name != "" {
		if err := CheckName("broker.name", cfg.Name); err != nil {
			return Resolution{}, err
		}
	}
	var rec record
	found, err := st.Load(recordDoc, &rec)
	if err != nil {
		return Resolution{}, fmt.Errorf("cluster: the recorded broker name: %w", err)
	}
	if found && cfg.Name == "" {
		if err := CheckName("the broker name recorded in "+dir, rec.Name); err != nil {
			return Resolution{}, fmt.Errorf("cluster: %w (set broker.name to replace it)", err)
		}
	}
	switch {
	case cfg.Name != "" && found && rec.Name == cfg.Name:
		res.Source = FromConfig
		return res, nil
	case cfg.Name != "" && found:
		res.Source, res.Previous = FromRenaming, rec.Name
	case cfg.Name != "":
		res.Source = FromConfig
	case found:
		res.Name, res.Source = rec.Name, FromRecord
		return res, nil
	default:
		host, _ := os.Hostname()
		res.Name, res.Source = DeriveName(host, dir), FromDerived
	}
	if cfg.ID != 0 {
		if cfg.Name == "" {
			return Resolution{}, fmt.Errorf("cluster: a replica (broker id %d) needs its group's name configured: set broker.name", cfg.ID)
		}
		return res, nil // a replica writes nothing: its master records the name
	}
	if err := st.Save(recordDoc, record{Name: res.Name}); err != nil {
		return Resolution{}, fmt.Errorf("cluster: record the broker name: %w", err)
	}
	return res, nil
}
