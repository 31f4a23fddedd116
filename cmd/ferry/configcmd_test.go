package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/internal/tlstest"
)

// The annotated example stays true: it parses, and each value it sets is
// the default.
func TestExampleConfigIsValidAndHoldsTheDefaults(t *testing.T) {
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"config", "check", "../../ferry.example.yaml"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ok") {
		t.Fatalf("config check printed %q", out.String())
	}
	got, err := config.Load(config.Sources{File: "../../ferry.example.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	got.Bridges, want.Bridges = nil, nil
	got.MQTT.Rules, want.MQTT.Rules = nil, nil
	if !equalConfig(got, want) {
		t.Fatalf("ferry.example.yaml differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
}

func equalConfig(a, b config.Config) bool { return fmtConfig(a) == fmtConfig(b) }

func fmtConfig(c config.Config) string {
	return sprint(c.DataDir, c.NamesrvAddr, c.Native, c.NamesrvMaxConnections, c.HTTPAddr, c.Namesrv, c.Log, c.Storage, c.Core, c.MQTT,
		c.Auth.PasswordFile, c.Auth.ACLFile, c.Auth.ReloadInterval, c.Auth.AllowAnonymous == nil, c.Runtime, c.Broker)
}

func TestConfigCheckNamesTheBadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("mqtt:\n  max-inflght: 3\n"), 0o600)
	root := newRootCmd()
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"config", "check", path})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), `"mqtt.max-inflght"`) {
		t.Fatalf("config check of a bad file: %v", err)
	}
}

func sprint(v ...any) string { return fmt.Sprint(v...) }

// config check reads the native front-end's old top-level keys and warns
// of each, naming its key in the native section.
func TestConfigCheckWarnsOfOldNativeKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.yaml")
	if err := os.WriteFile(path, []byte("native-addr: :7000\nadvertise-addr: broker-a:7000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"config", "check", path})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"warning: config file " + path + ": the key native-addr is deprecated: write native.addr",
		"the key advertise-addr is deprecated: write native.advertise-addr"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("config check's warnings %q lack %q", errOut.String(), want)
		}
	}
	if !strings.Contains(out.String(), "ok") {
		t.Fatalf("config check printed %q", out.String())
	}
}

// The broker's flags keep their names and set the native section's keys.
func TestBrokerNativeFlagsSetTheNativeSection(t *testing.T) {
	cmd := newBrokerCmd()
	if err := cmd.ParseFlags([]string{"--native-addr", "127.0.0.1:7000", "--advertise-addr", "broker-a:7000",
		"--native-tls-cert", "c.pem", "--native-tls-key", "k.pem"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Sources{Flags: cmd.Flags()})
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Native; n.Addr != "127.0.0.1:7000" || n.AdvertiseAddr != "broker-a:7000" || n.TLSCert != "c.pem" || n.TLSKey != "k.pem" {
		t.Fatalf("native section %+v", n)
	}
}

// config check opens each file the configuration names, as serve would,
// and fails naming the key and the file.
func TestConfigCheckOpensTheFilesItNames(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := tlstest.SelfSigned(t, dir)
	passwd := filepath.Join(dir, "passwd")
	root := newRootCmd()
	root.SetOut(&bytes.Buffer{})
	root.SetIn(strings.NewReader("secret\n"))
	root.SetArgs([]string{"passwd", "--cost", "4", passwd, "alice"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	acl := filepath.Join(dir, "acl")
	os.WriteFile(acl, []byte("user alice\ntopic readwrite #\n"), 0o600)
	badACL := filepath.Join(dir, "bad-acl")
	os.WriteFile(badACL, []byte("topic sometimes #\n"), 0o600)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("short\n"), 0o600)
	missing := filepath.Join(dir, "absent")

	for _, tc := range []struct {
		name, yaml, want string // want "" means ok
	}{
		{"every file there", fmt.Sprintf("auth:\n  password-file: %s\n  acl-file: %s\nnative:\n  tls-cert: %s\n  tls-key: %s\n", passwd, acl, cert, key), ""},
		{"missing ACL file", fmt.Sprintf("auth:\n  acl-file: %s\n", missing), "auth.acl-file: auth: open " + missing + ": no such file"},
		{"ACL file that does not parse", fmt.Sprintf("auth:\n  acl-file: %s\n", badACL), "auth.acl-file: auth: " + badACL + ":1"},
		{"missing password file", fmt.Sprintf("auth:\n  password-file: %s\n", missing), "auth.password-file: auth: open " + missing},
		{"key missing", fmt.Sprintf("mqtt:\n  tls-cert: %s\n  tls-key: %s\n", cert, missing), "mqtt.tls-cert, mqtt.tls-key (" + cert + ", " + missing + ")"},
		{"cert is not one", fmt.Sprintf("amqp:\n  tls-cert: %s\n  tls-key: %s\n", acl, key), "amqp.tls-cert, amqp.tls-key (" + acl},
		{"client CA missing", fmt.Sprintf("tls-ca: %s\n", missing), "tls-ca: open " + missing},
		{"short cluster secret", fmt.Sprintf("cluster-secret-file: %s\n", secret), "cluster-secret-file " + secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ferry.yaml")
			os.WriteFile(path, []byte(tc.yaml), 0o600)
			root := newRootCmd()
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			root.SetArgs([]string{"config", "check", path})
			err := root.Execute()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("config check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("config check: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
