package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFile is what the test reads of docker-compose.yml.
type composeFile struct {
	Services map[string]struct {
		Profiles    []string          `yaml:"profiles"`
		Build       any               `yaml:"build"`
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Entrypoint  []string          `yaml:"entrypoint"`
		DependsOn   map[string]any    `yaml:"depends_on"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
		Healthcheck struct {
			Test     []string `yaml:"test"`
			Interval string   `yaml:"interval"`
			Timeout  string   `yaml:"timeout"`
			Retries  int      `yaml:"retries"`
			Disable  bool     `yaml:"disable"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// No Docker engine runs here, so the compose file and the Dockerfile are
// checked by parsing: every ferry command in them (service commands and
// health checks) parses with this binary's flags, the config files they
// mount pass `ferry config check`, and every path they name exists.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, want := range []string{"namesrv", "namesrv-b", "broker-a", "broker-b", "rabbitmq", "device", "consumer"} {
		if s, ok := c.Services[want]; !ok {
			t.Errorf("docker-compose.yml has no %s service", want)
		} else if len(s.Profiles) > 0 {
			t.Errorf("%s is in profiles %q: the default services run without a profile", want, s.Profiles)
		}
	}
	// The NameServers and the brokers share one cluster secret; each broker
	// has its own name and registers with both NameServers.
	names := map[string]string{}
	for _, name := range []string{"namesrv", "namesrv-b", "broker-a", "broker-b"} {
		s := c.Services[name]
		if got, want := s.Environment["FERRY_CLUSTER_SECRET"], c.Services["namesrv"].Environment["FERRY_CLUSTER_SECRET"]; got == "" || got != want {
			t.Errorf("%s's FERRY_CLUSTER_SECRET %q, want the NameServer's %q", name, got, want)
		}
		if i := slices.Index(s.Command, "--broker-name"); i >= 0 && i+1 < len(s.Command) {
			if other, dup := names[s.Command[i+1]]; dup {
				t.Errorf("%s and %s are both --broker-name %s", other, name, s.Command[i+1])
			}
			names[s.Command[i+1]] = name
		} else if !strings.HasPrefix(name, "namesrv") {
			t.Errorf("%s has no --broker-name", name)
		}
		if i := slices.Index(s.Command, "--namesrv"); strings.HasPrefix(name, "broker") &&
			(i < 0 || i+1 >= len(s.Command) || s.Command[i+1] != "namesrv:9876,namesrv-b:9876") {
			t.Errorf("%s does not register with both NameServers: %q", name, s.Command)
		}
	}
	checkComposeCluster(t, c)
	for name, s := range c.Services {
		for dep := range s.DependsOn {
			if d, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			} else if !slices.Equal(d.Profiles, s.Profiles) {
				t.Errorf("%s (profiles %q) depends on %s (profiles %q): one profile would start without the other", name, s.Profiles, dep, d.Profiles)
			}
		}
		if s.Image != "ferry" {
			continue
		}
		if len(s.Healthcheck.Test) == 0 && len(s.Entrypoint) == 0 {
			t.Errorf("%s has no health check", name)
		}
		// An example program in the ferry image would inherit the image's
		// check, ferry health on a port where nothing listens.
		if len(s.Entrypoint) > 0 && len(s.Healthcheck.Test) == 0 && !s.Healthcheck.Disable {
			t.Errorf("%s runs %s and inherits the image's health check, which probes ferry serve's port: give it its own or disable it", name, s.Entrypoint[0])
		}
		if len(s.Command) > 0 {
			checkFerryArgs(t, name+" command", s.Command)
		}
		if hc := s.Healthcheck.Test; len(hc) > 2 && hc[0] == "CMD" && hc[1] == "ferry" {
			checkFerryArgs(t, name+" health check", hc[2:])
		}
		if len(s.Entrypoint) > 0 {
			if _, err := os.Stat(filepath.Join("../../examples", s.Entrypoint[0], "main.go")); err != nil {
				t.Errorf("%s runs %s, which is not an example: %v", name, s.Entrypoint[0], err)
			}
		}
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
				if strings.HasSuffix(dst, ".yaml:ro") || strings.HasSuffix(dst, ".yaml") {
					t.Setenv("RABBIT_PASSWORD", "guest")
					checkFerryArgs(t, name+" config", []string{"config", "check", filepath.Join("../..", src)})
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
		}
	}
}

// checkComposeCluster checks the cluster profile: three controllers with
// one Raft membership and their own ids, and a group of three brokers with
// one name and their own ids, each given every controller and NameServer
// and advertising the addresses the others reach it at; one secret.
func checkComposeCluster(t *testing.T, c composeFile) {
	t.Helper()
	flag := func(args []string, name string) string {
		if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return ""
	}
	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
	secret := c.Services["namesrv"].Environment["FERRY_CLUSTER_SECRET"]
	ctls := []string{"controller-1", "controller-2", "controller-3"}
	var peers, nss, ctlAddrs []string
	for i, name := range ctls {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("docker-compose.yml has no %s service", name)
			continue
		}
		if !slices.Equal(s.Profiles, []string{"cluster"}) || s.Environment["FERRY_CLUSTER_SECRET"] != secret {
			t.Errorf("%s: profiles %q and secret %q, want the cluster profile and the NameServer's secret", name, s.Profiles, s.Environment["FERRY_CLUSTER_SECRET"])
		}
		if s.Command[0] != "namesrv" || !slices.Contains(s.Command, "--controller") || flag(s.Command, "--node-id") != strconv.Itoa(i+1) {
			t.Errorf("%s: %q, want namesrv --controller --node-id %d", name, s.Command, i+1)
		}
		peers = append(peers, flag(s.Command, "--raft-peers"))
		nss = append(nss, name+":"+port(flag(s.Command, "--namesrv-addr")))
		ctlAddrs = append(ctlAddrs, name+":"+port(flag(s.Command, "--controller-addr")))
	}
	for i, p := range peers {
		var want []string
		for j, name := range ctls {
			want = append(want, fmt.Sprintf("%d=%s:9879", j+1, name))
		}
		if p != strings.Join(want, ",") {
			t.Errorf("%s's --raft-peers %q, want %q", ctls[i], p, strings.Join(want, ","))
		}
	}
	for id := range 3 {
		name := fmt.Sprint("group-a-", id)
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("docker-compose.yml has no %s service", name)
			continue
		}
		for _, ctl := range ctls {
			if _, ok := s.DependsOn[ctl]; !ok {
				t.Errorf("%s does not wait for %s", name, ctl)
			}
		}
		want := map[string]string{
			"--broker-name": "group-a", "--broker-id": strconv.Itoa(id), "--replication-mode": "sync", "--min-insync-replicas": "2",
			"--namesrv": strings.Join(nss, ","), "--controllers": strings.Join(ctlAddrs, ","),
			"--advertise-addr": name + ":" + port(flag(s.Command, "--native-addr")),
		}
		for f, w := range want {
			if got := flag(s.Command, f); got != w {
				t.Errorf("%s: %s %q, want %q", name, f, got, w)
			}
		}
		if got, w := s.Environment["FERRY_REPLICATION_ADVERTISE_ADDR"], name+":"+port(flag(s.Command, "--replication-addr")); got != w {
			t.Errorf("%s: FERRY_REPLICATION_ADVERTISE_ADDR %q, want %q", name, got, w)
		}
		if !slices.Equal(s.Profiles, []string{"cluster"}) || s.Environment["FERRY_CLUSTER_SECRET"] != secret {
			t.Errorf("%s: profiles %q and secret %q, want the cluster profile and the NameServer's secret", name, s.Profiles, s.Environment["FERRY_CLUSTER_SECRET"])
		}
	}
}

// checkFerryArgs parses args with ferry's commands, running only config
// check (which reads a file), never a server.
func checkFerryArgs(t *testing.T, what string, args []string) {
	t.Helper()
	root := newRootCmd()
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		t.Errorf("%s: %q is not a ferry command: %v", what, args, err)
		return
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Errorf("%s: %q: %v", what, args, err)
		return
	}
	if cmd.Name() == "check" {
		root.SetArgs(args)
		root.SetOut(&bytes.Buffer{})
		if err := root.Execute(); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
}

func TestDockerfile(t *testing.T) {
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := []string{"FROM", "WORKDIR", "COPY", "RUN", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD", "ENV", "ARG", "LABEL"}
	sc := bufio.NewScanner(f)
	var froms int
	var user, entry bool
	cont := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		wasCont := cont
		cont = strings.HasSuffix(line, "\\")
		if line == "" || strings.HasPrefix(line, "#") || wasCont {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		if !slices.Contains(known, instr) {
			t.Errorf("Dockerfile: unknown instruction %q", instr)
		}
		switch instr {
		case "FROM":
			froms++
		case "USER":
			user = rest != "root" && rest != "0"
		case "ENTRYPOINT":
			entry = strings.Contains(rest, `"ferry"`)
		case "COPY":
			if !strings.Contains(rest, "--from=") {
				for _, src := range strings.Fields(rest)[:len(strings.Fields(rest))-1] {
					if _, err := os.Stat(filepath.Join("../..", src)); err != nil {
						t.Errorf("Dockerfile copies %s: %v", src, err)
					}
				}
			}
		case "RUN":
			for _, p := range strings.Fields(rest) {
				if strings.HasPrefix(p, "./") {
					if _, err := os.Stat(filepath.Join("../..", p)); err != nil {
						t.Errorf("Dockerfile builds %s: %v", p, err)
					}
				}
			}
		}
	}
	if froms < 2 || !user || !entry {
		t.Errorf("Dockerfile: want a multi-stage build (%d FROM), a non-root USER (%v) and ferry as the entrypoint (%v)", froms, user, entry)
	}
}
