package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// flagSet binds the flags a command like ferry serve has and parses args.
func flagSet(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("config", "", "not a config key")
	AddFlag(fs, "data-dir", "data-dir", "data directory")
	AddFlag(fs, "segment-size", "storage.segment-size", "segment size")
	AddFlag(fs, "max-message-size", "storage.max-message-size", "max message size")
	AddFlag(fs, "flush", "storage.flush", "flush mode")
	AddFlag(fs, "flush-interval", "storage.flush-interval", "flush interval")
	AddFlag(fs, "retention-age", "storage.retention-age", "retention age")
	AddFlag(fs, "retention-disk-ratio", "storage.retention-disk-ratio", "disk ratio")
	AddFlag(fs, "log-format", "log.format", "log format")
	AddFlag(fs, "log-level", "log.level", "log level")
	AddFlag(fs, "allow-anonymous", "auth.allow-anonymous", "anonymous access")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultsOnly(t *testing.T) {
	cfg, err := Load(Sources{Flags: flagSet(t)})
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v, want defaults %+v", cfg, want)
	}
}

// TestPrecedence sets each key from a growing prefix of the sources, so the
// source that wins for each key shows the order default < file < env < flag.
func TestPrecedence(t *testing.T) {
	path := writeFile(t, `
data-dir: from-file
log:
  level: warn
storage:
  flush: sync
  segment-size: 2048
  flush-interval: 1s
  retention-disk-ratio: 0.5
`)
	environ := []string{
		"PATH=/bin",
		"FERRY_LOG_LEVEL=error",
		"FERRY_STORAGE_SEGMENT_SIZE=4096",
		"FERRY_STORAGE_FLUSH_INTERVAL=2s",
		"FERRY_STORAGE_RETENTION_AGE=", // empty counts as unset
	}
	fs := flagSet(t, "--flush-interval=3s", "--log-format", "json")

	cfg, err := Load(Sources{File: path, Environ: environ, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DataDir = "from-file"                   // file over default
	want.Storage.Flush = "sync"                  // file over default
	want.Storage.RetentionDiskRatio = 0.5        // file over default
	want.Log.Level = "error"                     // env over file
	want.Storage.SegmentSize = 4096              // env over file
	want.Storage.FlushInterval = 3 * time.Second // flag over env over file
	want.Log.Format = "json"                     // flag over default
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestUnchangedFlagKeepsLowerSource(t *testing.T) {
	// --data-dir has a default but was not given: the env value stands.
	cfg, err := Load(Sources{Environ: []string{"FERRY_DATA_DIR=/from/env"}, Flags: flagSet(t)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/from/env" {
		t.Fatalf("data-dir = %q, want /from/env", cfg.DataDir)
	}
}

func TestFileFromEnv(t *testing.T) {
	path := writeFile(t, "data-dir: via-ferry-config\n")
	cfg, err := Load(Sources{Environ: []string{FileEnv + "=" + path}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "via-ferry-config" {
		t.Fatalf("data-dir = %q", cfg.DataDir)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string
		environ []string
		args    []string
		want    string // in the error
	}{
		{name: "unknown top-level key", file: "data-dri: x\n", want: `unknown key "data-dri"`},
		{name: "unknown nested key", file: "storage:\n  segmnet-size: 1\n", want: `unknown key "storage.segmnet-size"`},
		{name: "bad flush in file", file: "storage:\n  flush: sometimes\n", want: `storage.flush "sometimes"`},
		{name: "bad flush in env", environ: []string{"FERRY_STORAGE_FLUSH=never"}, want: `storage.flush "never"`},
		{name: "bad flush flag", args: []string{"--flush=fast"}, want: `storage.flush "fast"`},
		{name: "bad duration", file: "storage:\n  retention-age: soon\n", want: "retention-age"},
		{name: "bad size", environ: []string{"FERRY_STORAGE_SEGMENT_SIZE=big"}, want: "segment-size"},
		{name: "bad log format", args: []string{"--log-format=xml"}, want: `log.format "xml"`},
		{name: "bad log level", environ: []string{"FERRY_LOG_LEVEL=loud"}, want: `log.level "loud"`},
		{name: "bad ratio", args: []string{"--retention-disk-ratio=1.5"}, want: "retention-disk-ratio"},
		{name: "empty data dir", file: "data-dir: ''\n", want: "data-dir"},
		{name: "missing file", file: "-", want: "no such file"},
		{name: "anonymous off without passwords", environ: []string{"FERRY_AUTH_ALLOW_ANONYMOUS=false"}, want: "auth.allow-anonymous false: no client could connect without auth.password-file"},
		{name: "bad anonymous switch", file: "auth:\n  allow-anonymous: maybe\n", want: "allow-anonymous"},
		{name: "negative reload interval", file: "auth:\n  reload-interval: -1s\n", want: "auth.reload-interval -1s"},
		{name: "no connect timeout", environ: []string{"FERRY_MQTT_CONNECT_TIMEOUT=0s"}, want: "mqtt.connect-timeout 0s"},
		{name: "tiny connect size", environ: []string{"FERRY_MQTT_MAX_CONNECT_SIZE=10"}, want: "mqtt.max-connect-size 10"},
		{name: "no topic levels", file: "mqtt:\n  max-topic-levels: 0\n", want: "mqtt.max-topic-levels 0"},
		{name: "topic length past the protocol's", file: "mqtt:\n  max-topic-length: 70000\n", want: "mqtt.max-topic-length 70000"},
		{name: "negative topic aliases", file: "mqtt:\n  max-topic-alias: -1\n", want: "mqtt.max-topic-alias -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var path string
			switch tc.file {
			case "":
			case "-":
				path = filepath.Join(t.TempDir(), "absent.yaml")
			default:
				path = writeFile(t, tc.file)
			}
			_, err := Load(Sources{File: path, Environ: tc.environ, Flags: flagSet(t, tc.args...)})
			if err == nil {
				t.Fatalf("Load succeeded, want an error with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// TestAuthAllowAnonymous shows the switch's three states: unset unless a
// source sets it, then true or false from whichever source wins.
func TestAuthAllowAnonymous(t *testing.T) {
	file := writeFile(t, "auth:\n  password-file: /etc/ferry/passwd\n  allow-anonymous: false\n")
	for _, tc := range []struct {
		name    string
		file    string
		environ []string
		args    []string
		want    *bool
	}{
		{name: "unset", want: nil},
		{name: "file", file: file, want: new(false)},
		{name: "env over file", file: file, environ: []string{"FERRY_AUTH_ALLOW_ANONYMOUS=true"}, want: new(true)},
		{name: "flag", args: []string{"--allow-anonymous"}, want: new(true)},
		{name: "flag over env", file: file, environ: []string{"FERRY_AUTH_ALLOW_ANONYMOUS=true"}, args: []string{"--allow-anonymous=false"}, want: new(false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(Sources{File: tc.file, Environ: tc.environ, Flags: flagSet(t, tc.args...)})
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Auth.AllowAnonymous; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("auth.allow-anonymous = %v, want %v", fmtBoolPtr(got), fmtBoolPtr(tc.want))
			}
		})
	}
}

func fmtBoolPtr(b *bool) string {
	if b == nil {
		return "unset"
	}
	return strconv.FormatBool(*b)
}

func TestEnvName(t *testing.T) {
	for key, want := range map[string]string{
		"data-dir":             "FERRY_DATA_DIR",
		"storage.segment-size": "FERRY_STORAGE_SEGMENT_SIZE",
		"log.level":            "FERRY_LOG_LEVEL",
	} {
		if got := EnvName(key); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestEveryKeyHasOneEnvVar(t *testing.T) {
	m := envKeys() // panics on a collision
	if len(m) != len(Keys()) {
		t.Fatalf("%d env vars for %d keys", len(m), len(Keys()))
	}
	if _, ok := m[FileEnv]; ok {
		t.Fatalf("a key maps to %s, which names the config file", FileEnv)
	}
}

func TestEveryKeyCanBeAFlag(t *testing.T) {
	fs := pflag.NewFlagSet("all", pflag.ContinueOnError)
	for _, k := range Keys() {
		AddFlag(fs, strings.ReplaceAll(k, ".", "-"), k, k) // panics on an unsupported type
	}
}

func TestAddFlagUnknownKeyPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("AddFlag with an unknown key did not panic")
		}
	}()
	AddFlag(pflag.NewFlagSet("x", pflag.ContinueOnError), "nope", "storage.nope", "")
}

func TestBridges(t *testing.T) {
	path := writeFile(t, `
http-addr: off
bridges:
  - name: telemetry
    direction: outbound
    url: amqp://ferry@rabbit:5672/iot
    password-env: RABBIT_PW
    topic: devices
    filter: +/telemetry
    backoff-max: 10s
  - name: commands
    direction: inbound
    url: amqp://guest:guest@127.0.0.1:5672/
    topic: commands
    queue:
      name: ferry-commands
      declare: true
      bindings:
        - exchange: amq.topic
          key: commands.#
`)
	cfg, err := Load(Sources{File: path, Environ: []string{"RABBIT_PW=s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "off" || len(cfg.Bridges) != 2 {
		t.Fatalf("got %+v", cfg)
	}
	out, in := cfg.Bridges[0], cfg.Bridges[1]
	if out.URL != "amqp://ferry:s3cret@rabbit:5672/iot" || out.BackoffMax != 10*time.Second || out.Filter != "+/telemetry" {
		t.Errorf("outbound: %+v", out)
	}
	if in.Queue.Name != "ferry-commands" || !in.Queue.Declare || len(in.Queue.Bindings) != 1 || in.Queue.Bindings[0].Key != "commands.#" {
		t.Errorf("inbound: %+v", in)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"bridges:\n  - name: a\n    direction: sideways\n    url: amqp://h/\n    topic: t\n", `bridges[0] (a).direction "sideways"`},
		{"bridges:\n  - name: a\n    direction: inbound\n    url: amqp://h/\n    topic: t\n", "bridges[0] (a).queue.name"},
		{"bridges:\n  - name: a\n    direction: outbound\n    url: http://h/\n    topic: t\n", "bridges[0] (a).url"},
		{"bridges:\n  - name: a\n    direction: outbound\n    url: amqp://h/\n    topic: t\n    on-nack: drop\n", `bridges[0] (a).on-nack "drop"`},
		{"bridges:\n  - name: a\n    direction: outbound\n    url: amqp://h/\n    topic: t\n    password-env: NOPE\n", "bridges[0] (a).password-env: NOPE is not set"},
		{"bridges:\n  - name: a\n    direction: outbound\n    url: amqp://h/\n    topic: t\n    windw: 3\n", `unknown key "bridges[0].windw"`},
		{"bridges:\n  - {name: a, direction: outbound, url: 'amqp://h/', topic: t}\n  - {name: a, direction: outbound, url: 'amqp://h/', topic: t}\n", "bridges[1] (a).name: another bridge"},
	} {
		_, err := Load(Sources{File: writeFile(t, tc.yaml)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want it to say %q", tc.yaml, err, tc.want)
		}
	}
}

// The broker's identity: broker.name and broker.cluster, FERRY_BROKER_NAME,
// and the file's old broker-name, read as broker.name with a note.
func TestBrokerIdentityKeys(t *testing.T) {
	cfg, err := Load(Sources{Environ: []string{"FERRY_BROKER_NAME=broker-b", "FERRY_BROKER_CLUSTER=east"}})
	if err != nil || cfg.Broker.Name != "broker-b" || cfg.Broker.Cluster != "east" || len(cfg.Notes) != 0 {
		t.Fatalf("from the environment: %+v, %v", cfg.Broker, err)
	}
	if d := Default(); d.Broker.Name != "" || d.Broker.Cluster != "DefaultCluster" {
		t.Fatalf("defaults: %+v", d.Broker)
	}
	cfg, err = Load(Sources{File: writeFile(t, "broker:\n  name: broker-c\n")})
	if err != nil || cfg.Broker.Name != "broker-c" || len(cfg.Notes) != 0 {
		t.Fatalf("broker.name in the file: %+v, %v", cfg.Broker, err)
	}
	cfg, err = Load(Sources{File: writeFile(t, "broker-name: broker-old\n")})
	if err != nil || cfg.Broker.Name != "broker-old" || len(cfg.Notes) != 1 || !strings.Contains(cfg.Notes[0], "broker-name is deprecated") {
		t.Fatalf("the old broker-name in the file: %+v, notes %q, %v", cfg.Broker, cfg.Notes, err)
	}
	if _, err := Load(Sources{File: writeFile(t, "broker-name: a\nbroker:\n  name: b\n")}); err == nil || !strings.Contains(err.Error(), "keep broker.name only") {
		t.Fatalf("both broker-name and broker.name: %v", err)
	}
	for _, env := range []string{"FERRY_BROKER_NAME=no/slash", "FERRY_BROKER_NAME=" + strings.Repeat("x", 65), "FERRY_BROKER_CLUSTER=a b"} {
		if _, err := Load(Sources{Environ: []string{env}}); err == nil || !strings.Contains(err.Error(), "broker.") {
			t.Errorf("%s: %v, want an error naming the key", env, err)
		}
	}
}
