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
  segment-size: 8388608
  flush-interval: 1s
  retention-disk-ratio: 0.5
`)
	environ := []string{
		"PATH=/bin",
		"FERRY_LOG_LEVEL=error",
		"FERRY_STORAGE_SEGMENT_SIZE=16777216",
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
	want.Storage.SegmentSize = 16 << 20          // env over file
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
		{name: "duration without a unit in file", file: "core:\n  heartbeat-timeout: 10\n", want: "core.heartbeat-timeout: 10 has no unit: write 10s"},
		{name: "duration without a unit in env", environ: []string{"FERRY_CORE_HEARTBEAT_TIMEOUT=10"}, want: `core.heartbeat-timeout: "10" has no unit: write 10s`},
		{name: "fraction without a unit", file: "storage:\n  flush-interval: 0.5\n", want: "storage.flush-interval: 0.5 has no unit"},
		{name: "duration in words", file: "storage:\n  flush-interval: 5 minutes\n", want: `storage.flush-interval: "5 minutes" is not a duration: a Go duration is a number with a unit: ns, us, ms, s, m or h, as in 200ms`},
		{name: "bridge duration without a unit", file: "bridges:\n  - name: b\n    heartbeat: 30\n", want: "heartbeat: 30 has no unit"},
		{name: "no segment size", file: "storage:\n  segment-size: 0\n", want: "storage.segment-size 0: want 4194304 (storage.max-message-size) to 1099511627776 bytes"},
		{name: "segment smaller than a message", environ: []string{"FERRY_STORAGE_SEGMENT_SIZE=4096"}, want: "storage.segment-size 4096: want 4194304"},
		{name: "no message size", args: []string{"--max-message-size=0"}, want: "storage.max-message-size 0: want 1..268435456 bytes"},
		{name: "no flush interval", file: "storage:\n  flush-interval: 0\n", want: "storage.flush-interval 0s: want at least 1ms"},
		{name: "no retention age", file: "storage:\n  retention-age: 0s\n", want: "storage.retention-age 0s: want a positive age"},
		{name: "no disk ratio", file: "storage:\n  retention-disk-ratio: 0\n", want: "storage.retention-disk-ratio 0: want a share"},
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

// nativeFlagSet binds the native section's flags as ferry broker does.
func nativeFlagSet(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlag(fs, "native-addr", "native.addr", "listen address")
	AddFlag(fs, "native-tls-cert", "native.tls-cert", "certificate")
	AddFlag(fs, "native-tls-key", "native.tls-key", "key")
	AddFlag(fs, "advertise-addr", "native.advertise-addr", "advertised address")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

// nativeWant is the configuration both TestNativeSection's file and
// TestNativeDeprecatedKeys' old keys describe.
func nativeWant() Config {
	want := Default()
	want.NamesrvMaxConnections = 20
	want.Native.Addr, want.Native.TLSCert, want.Native.TLSKey = "127.0.0.1:7000", "/etc/ferry/cert.pem", "/etc/ferry/key.pem"
	want.Native.AdvertiseAddr = "broker-a:7000"
	want.Native.MaxConnections, want.Native.MaxFrame, want.Native.MaxInFlight = 30, 2048, 4
	want.Native.FirstRequestTimeout, want.Native.IdleTimeout = 3*time.Second, time.Minute
	want.Native.MaxQueuedBytes, want.Native.MaxReadingBytes = 5000, 6000
	return want
}

func TestNativeSection(t *testing.T) {
	d := Default()
	if d.Native.Addr != ":10911" || d.Native.MaxFrame != 16<<20 || d.NamesrvMaxConnections != 10000 || d.Native.MaxConnections != 10000 {
		t.Fatalf("defaults: %+v, namesrv-max-connections %d", d.Native, d.NamesrvMaxConnections)
	}
	cfg, err := Load(Sources{File: writeFile(t, `
namesrv-max-connections: 20
native:
  addr: 127.0.0.1:7000
  tls-cert: /etc/ferry/cert.pem
  tls-key: /etc/ferry/key.pem
  advertise-addr: broker-a:7000
  max-connections: 30
  max-frame: 2048
  max-in-flight: 4
  first-request-timeout: 3s
  idle-timeout: 1m
  max-queued-bytes: 5000
  max-reading-bytes: 6000
`)})
	if err != nil {
		t.Fatal(err)
	}
	want := nativeWant()
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
}

// The native front-end's old top-level keys are read into its section,
// each with a note naming the old key and the new.
func TestNativeDeprecatedKeys(t *testing.T) {
	cfg, err := Load(Sources{File: writeFile(t, `
native-addr: 127.0.0.1:7000
native-tls-cert: /etc/ferry/cert.pem
native-tls-key: /etc/ferry/key.pem
advertise-addr: broker-a:7000
native-max-connections: 30
native-max-frame: 2048
native-max-in-flight: 4
native-first-request-timeout: 3s
native-idle-timeout: 1m
native-max-queued-bytes: 5000
native-max-reading-bytes: 6000
namesrv-max-connections: 20
`)})
	if err != nil {
		t.Fatal(err)
	}
	want := nativeWant()
	notes := cfg.Notes
	cfg.Notes = nil
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
	if len(notes) != 11 {
		t.Fatalf("%d notes, want one per old key: %q", len(notes), notes)
	}
	for _, pair := range [][2]string{{"native-addr", "native.addr"}, {"advertise-addr", "native.advertise-addr"}, {"native-max-reading-bytes", "native.max-reading-bytes"}} {
		found := false
		for _, n := range notes {
			found = found || strings.Contains(n, "the key "+pair[0]+" is deprecated: write "+pair[1])
		}
		if !found {
			t.Errorf("no note says %s is now %s: %q", pair[0], pair[1], notes)
		}
	}
}

func TestNativeDeprecatedKeyBesideNewKey(t *testing.T) {
	// The same value twice: read, with the note.
	cfg, err := Load(Sources{File: writeFile(t, "native-max-frame: 2048\nnative:\n  max-frame: 2048\n")})
	if err != nil || cfg.Native.MaxFrame != 2048 || len(cfg.Notes) != 1 {
		t.Fatalf("the same value under both keys: max-frame %d, notes %q, %v", cfg.Native.MaxFrame, cfg.Notes, err)
	}
	// Different values: an error naming both keys.
	for _, tc := range []struct{ yaml, old, new string }{
		{"native-addr: :7000\nnative:\n  addr: :7001\n", "native-addr", "native.addr"},
		{"advertise-addr: a:1\nnative:\n  advertise-addr: b:1\n", "advertise-addr", "native.advertise-addr"},
		{"native-idle-timeout: 1m\nnative:\n  idle-timeout: 2m\n", "native-idle-timeout", "native.idle-timeout"},
	} {
		_, err := Load(Sources{File: writeFile(t, tc.yaml)})
		if err == nil || !strings.Contains(err.Error(), tc.old+" and "+tc.new+" set to different values") || !strings.Contains(err.Error(), "keep "+tc.new+" only") {
			t.Errorf("%q: %v, want an error naming %s and %s", tc.yaml, err, tc.old, tc.new)
		}
	}
}

func TestNativeEnvironment(t *testing.T) {
	// FERRY_NATIVE_ADDR names both native-addr and native.addr: it sets
	// native.addr, with no note; so do the limits' variables.
	cfg, err := Load(Sources{Environ: []string{"FERRY_NATIVE_ADDR=127.0.0.1:7000", "FERRY_NATIVE_MAX_FRAME=4096",
		"FERRY_NATIVE_IDLE_TIMEOUT=5s", "FERRY_NAMESRV_MAX_CONNECTIONS=7", "FERRY_NATIVE_ADVERTISE_ADDR=broker-a:7000"}})
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Native
	if n.Addr != "127.0.0.1:7000" || n.MaxFrame != 4096 || n.IdleTimeout != 5*time.Second || n.AdvertiseAddr != "broker-a:7000" ||
		cfg.NamesrvMaxConnections != 7 || len(cfg.Notes) != 0 {
		t.Fatalf("native %+v, namesrv-max-connections %d, notes %q", n, cfg.NamesrvMaxConnections, cfg.Notes)
	}
	// The environment wins over the file's old key too.
	cfg, err = Load(Sources{File: writeFile(t, "native-addr: :7001\n"), Environ: []string{"FERRY_NATIVE_ADDR=:7002"}})
	if err != nil || cfg.Native.Addr != ":7002" {
		t.Fatalf("env over the file's old key: %q, %v", cfg.Native.Addr, err)
	}

	// advertise-addr's old variable is not the new key's: it is still
	// read, with a note.
	cfg, err = Load(Sources{Environ: []string{"FERRY_ADVERTISE_ADDR=broker-b:7000"}})
	if err != nil || cfg.Native.AdvertiseAddr != "broker-b:7000" || len(cfg.Notes) != 1 ||
		!strings.Contains(cfg.Notes[0], "FERRY_ADVERTISE_ADDR is deprecated: set FERRY_NATIVE_ADVERTISE_ADDR") {
		t.Fatalf("FERRY_ADVERTISE_ADDR: %q, notes %q, %v", cfg.Native.AdvertiseAddr, cfg.Notes, err)
	}
	cfg, err = Load(Sources{Environ: []string{"FERRY_ADVERTISE_ADDR=b:1", "FERRY_NATIVE_ADVERTISE_ADDR=b:1"}})
	if err != nil || cfg.Native.AdvertiseAddr != "b:1" {
		t.Fatalf("both variables, one value: %q, %v", cfg.Native.AdvertiseAddr, err)
	}
	_, err = Load(Sources{Environ: []string{"FERRY_ADVERTISE_ADDR=a:1", "FERRY_NATIVE_ADVERTISE_ADDR=b:1"}})
	if err == nil || !strings.Contains(err.Error(), "FERRY_ADVERTISE_ADDR and FERRY_NATIVE_ADVERTISE_ADDR set to different values") {
		t.Fatalf("both variables, two values: %v", err)
	}
}

func TestNativeFlags(t *testing.T) {
	// The flags keep their names and set the section's keys, over the
	// environment and over the file's old keys.
	fs := nativeFlagSet(t, "--native-addr", "127.0.0.1:7003", "--advertise-addr", "broker-c:7003",
		"--native-tls-cert", "c.pem", "--native-tls-key", "k.pem")
	cfg, err := Load(Sources{File: writeFile(t, "native-addr: :7001\nadvertise-addr: x:1\n"), Environ: []string{"FERRY_NATIVE_ADDR=:7002"}, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Native; n.Addr != "127.0.0.1:7003" || n.AdvertiseAddr != "broker-c:7003" || n.TLSCert != "c.pem" || n.TLSKey != "k.pem" {
		t.Fatalf("native %+v", n)
	}
	if f := fs.Lookup("native-addr"); !strings.Contains(f.Usage, "FERRY_NATIVE_ADDR") || f.DefValue != ":10911" {
		t.Fatalf("--native-addr: usage %q, default %q", f.Usage, f.DefValue)
	}
}

func TestNativeErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"native:\n  max-frame: 10\n", "native.max-frame 10"},
		{"native-max-frame: 10\n", "native.max-frame 10"}, // the old key's value, named by its new key
		{"native:\n  tls-cert: c.pem\n", "native.tls-cert and native.tls-key: set both"},
		{"native:\n  idle-timeout: 0s\n", "native.idle-timeout 0s: must be positive"},
		{"native:\n  max-in-flight: -1\n", "native.max-in-flight -1: must be positive"},
		{"namesrv-max-connections: 0\n", "namesrv-max-connections 0: must be positive"},
		{"native:\n  adr: :1\n", `unknown key "native.adr"`},
	} {
		_, err := Load(Sources{File: writeFile(t, tc.yaml)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.yaml, err, tc.want)
		}
	}
}

// Each renamed key's new key exists, and an old key's variable, where it
// differs from the new key's, names no key of its own.
func TestRenamedKeys(t *testing.T) {
	keys := map[string]bool{}
	for _, k := range Keys() {
		keys[k] = true
	}
	byEnv := envKeys()
	for _, r := range renamed {
		if !keys[r.New] {
			t.Errorf("%s is renamed %s, which is no key", r.Old, r.New)
		}
		if keys[r.Old] {
			t.Errorf("%s is renamed %s but is still a key", r.Old, r.New)
		}
		if k, ok := byEnv[EnvName(r.Old)]; ok && k != r.New {
			t.Errorf("%s's variable %s sets %s", r.Old, EnvName(r.Old), k)
		}
	}
}
