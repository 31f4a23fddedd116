package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrymq/ferry/config"
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
	return sprint(c.DataDir, c.NamesrvAddr, c.NativeAddr, c.HTTPAddr, c.Namesrv, c.Log, c.Storage, c.Core, c.MQTT,
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
