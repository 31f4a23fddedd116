// Package config loads Ferry's configuration. Four sources are read, each
// overriding the one before:
//
//  1. the defaults (Default);
//  2. an optional YAML file (--config FILE, or FERRY_CONFIG);
//  3. FERRY_… environment variables;
//  4. command-line flags, only those set explicitly.
//
// Keys are kebab-case and nest with dots: storage.segment-size is
//
//	storage:
//	  segment-size: 1073741824
//
// in the file. A key's environment variable is FERRY_ followed by the key in
// upper case with every dot and dash turned into an underscore (EnvName):
// storage.segment-size is FERRY_STORAGE_SEGMENT_SIZE. A flag is bound to a key
// with AddFlag; --segment-size sets storage.segment-size.
//
// An unknown key in the file is an error that names it, so a typo never goes
// unnoticed. FERRY_ variables that name no key are left alone: other tools
// (the test suite's FERRY_TEST_AMQP_URL, say) share the prefix.
//
// A front-end or bridge owns its section (native, mqtt, amqp, bridges): its
// schema, defaults and checks live in a package of its own that imports
// nothing of Ferry (frontends/native/nativeconf, frontends/mqtt/mqttconf,
// frontends/amqp/amqpconf, bridge/rabbitmq/fileconf); Config assembles the
// sections, Default their defaults and Validate their checks.
//
// To add a setting: a field with a koanf tag in Config (or in one of its
// sections, in the package that owns it), its default in Default (or the
// section's), a check in Validate (or the section's) if it needs one, and
// an AddFlag line in the commands that take it as a flag. A key that moves
// keeps its old name as a deprecated alias in the file (renamed).
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/ferrymq/ferry/controller/controllerconf"
	"github.com/ferrymq/ferry/frontends/amqp/amqpconf"
	"github.com/ferrymq/ferry/frontends/mqtt/mqttconf"
	"github.com/ferrymq/ferry/frontends/native/nativeconf"
	"github.com/ferrymq/ferry/replication/replconf"
)

// Config is the whole of Ferry's configuration.
type Config struct {
	// DataDir holds the store; relative paths are from the working directory.
	DataDir string `koanf:"data-dir"`
	// NamesrvAddr is where ferry serve's NameServer listens, or "off".
	NamesrvAddr string `koanf:"namesrv-addr"`
	// Namesrv is the NameServers to use, comma separated: where ferry broker
	// registers and where client commands look routes up.
	Namesrv string `koanf:"namesrv"`
	// Username and Password are what client commands (produce, consume,
	// topic, group, bench) send to brokers that check credentials.
	Username string `koanf:"username"`
	Password string `koanf:"password"`
	// TLS has client commands reach the brokers over TLS, trusting the
	// system's roots and TLSCA (a PEM file of certificates) when set.
	TLS   bool   `koanf:"tls"`
	TLSCA string `koanf:"tls-ca"`
	// HTTPAddr is where metrics, health and status are served, or "off".
	HTTPAddr string `koanf:"http-addr"`
	// NamesrvHTTPAddr is where ferry namesrv, run alone, serves its
	// metrics and health, or "off"; not http-addr, so that a NameServer
	// and a broker can run on one host with the defaults.
	NamesrvHTTPAddr string        `koanf:"namesrv-http-addr"`
	Log             LogConfig     `koanf:"log"`
	Storage         StorageConfig `koanf:"storage"`
	Core            CoreConfig    `koanf:"core"`
	Auth            AuthConfig    `koanf:"auth"`
	Runtime         RuntimeConfig `koanf:"runtime"`
	// Native is the native front-end's section (package nativeconf); the
	// NameServer takes its limits too, but max-connections.
	Native nativeconf.Config `koanf:"native"`
	// MQTT is the MQTT front-end's section (package mqttconf).
	MQTT mqttconf.Config `koanf:"mqtt"`
	// Controller is the controllers' section (package controllerconf):
	// ferry controller's and ferry namesrv --controller's keys, and the
	// broker's list of controllers.
	Controller controllerconf.Config `koanf:"controller"`
	// Replication is a broker group's replication section (package replconf).
	Replication replconf.Config `koanf:"replication"`
	// AMQP is the AMQP 0-9-1 front-end's section (package amqpconf).
	AMQP amqpconf.Config `koanf:"amqp"`
	// Bridges are the RabbitMQ bridges ferry serve runs (file only).
	Bridges []BridgeConfig `koanf:"bridges"`

	// Broker is the broker's identity at the NameServers (docs/cluster.md).
	Broker BrokerConfig `koanf:"broker"`
	// Notes are what Load has to say of the sources besides errors: a
	// deprecated key it read, say. The commands log them.
	Notes []string `koanf:"-"`
	// ClusterSecret, or the file ClusterSecretFile names (one of them),
	// is the secret a cluster's NameServers and brokers share: brokers
	// prove with it that they may register (docs/auth.md). Prefer the
	// file (mode 0600) or FERRY_CLUSTER_SECRET to the config file.
	ClusterSecret     string `koanf:"cluster-secret"`
	ClusterSecretFile string `koanf:"cluster-secret-file"`
	// NamesrvMaxConnections caps the connections open at once on the
	// NameServer's listener. Its other limits are the native section's
	// (native.max-frame, …): it speaks the same protocol, but serves
	// every broker and client of a cluster, so its connections are
	// counted apart from one broker's.
	NamesrvMaxConnections int `koanf:"namesrv-max-connections"`
}

// BrokerConfig is the broker's identity; it mirrors cluster.Config.
// maxBrokerID bounds broker.id.
const maxBrokerID = 1023

type BrokerConfig struct {
	// Name names the broker at the NameServers; each broker of a cluster
	// needs its own (a second broker of a live one's name is refused).
	// "": the name recorded in the data directory, or on the first start
	// one derived from the host and the data directory, then recorded.
	// The file's old top-level key broker-name is read as this one.
	Name string `koanf:"name"`
	// Cluster is the cluster the broker registers in.
	Cluster string `koanf:"cluster"`
	// ID is the broker's id in its replicated group (docs/replication.md):
	// 0, 1, 2…, one per broker of the group. Which broker is master is the
	// controllers' decision, not the id's.
	ID int64 `koanf:"id"`
}

// RuntimeConfig tunes the Go runtime of a server process. The GOGC and
// GOMEMLIMIT environment variables, when set, win.
type RuntimeConfig struct {
	// GCPercent is the garbage collector's target (GOGC): a broker keeps
	// little live memory and allocates per message, so collecting less
	// often saves CPU. -1 turns the collector off (use with MemoryLimit).
	GCPercent int `koanf:"gc-percent"`
	// MemoryLimit is a soft limit in bytes (GOMEMLIMIT): past it the
	// collector runs harder whatever GCPercent says. 0: none.
	MemoryLimit int64 `koanf:"memory-limit"`
}

// AuthConfig configures client authentication and topic rules; it mirrors
// auth.Config, where each field is documented (and docs/auth.md the files).
type AuthConfig struct {
	PasswordFile string `koanf:"password-file"` // "" admits every username unchecked
	ACLFile      string `koanf:"acl-file"`      // "" allows every topic
	// AllowAnonymous is unset (nil) unless a source sets it: then anonymous
	// clients are admitted exactly when there is no password file.
	AllowAnonymous *bool         `koanf:"allow-anonymous"`
	ReloadInterval time.Duration `koanf:"reload-interval"` // 0 disables reloading
}

// CoreConfig configures topics and consumer groups; it mirrors core.Config,
// where each field is documented.
type CoreConfig struct {
	AutoCreateTopics bool          `koanf:"auto-create-topics"`
	DefaultQueues    int           `koanf:"default-queues"`
	MaxRetries       int           `koanf:"max-retries"`
	HeartbeatTimeout time.Duration `koanf:"heartbeat-timeout"`
	// Transaction checks of unresolved half messages (RocketMQ's
	// transactionCheckInterval and transactionCheckMax; the first check
	// after TransactionCheckDelay).
	TransactionCheckDelay    time.Duration `koanf:"transaction-check-delay"`
	TransactionCheckInterval time.Duration `koanf:"transaction-check-interval"`
	TransactionMaxChecks     int           `koanf:"transaction-max-checks"`
}

// LogConfig configures the process's log, written to stderr.
type LogConfig struct {
	// Format is "text" or "json".
	Format string `koanf:"format"`
	// Level is "debug", "info", "warn" or "error" (as slog.Level parses it).
	Level string `koanf:"level"`
}

// StorageConfig configures the store; it mirrors storage.Options, where each
// field is documented. Validate checks each key's range (storage.Options
// would read a zero as its default, which a file that says 0 never means).
type StorageConfig struct {
	SegmentSize        int64         `koanf:"segment-size"`
	MaxMessageSize     int           `koanf:"max-message-size"`
	Flush              string        `koanf:"flush"` // "sync" or "async"
	FlushInterval      time.Duration `koanf:"flush-interval"`
	RetentionAge       time.Duration `koanf:"retention-age"`        // negative disables
	RetentionDiskRatio float64       `koanf:"retention-disk-ratio"` // negative disables
}

// Default returns the configuration used where no source sets a key.
func Default() Config {
	return Config{
		DataDir:         "ferry-data",
		NamesrvAddr:     ":9876",
		Namesrv:         "127.0.0.1:9876",
		HTTPAddr:        ":8080",
		NamesrvHTTPAddr: ":8081",
		Broker:          BrokerConfig{Cluster: "DefaultCluster"},
		Log: LogConfig{
			Format: "text",
			Level:  "info",
		},
		Storage: StorageConfig{
			SegmentSize:        1 << 30,
			MaxMessageSize:     4 << 20,
			Flush:              "async",
			FlushInterval:      200 * time.Millisecond,
			RetentionAge:       72 * time.Hour,
			RetentionDiskRatio: 0.9,
		},
		Core: CoreConfig{
			AutoCreateTopics: true,
			DefaultQueues:    8,
			MaxRetries:       16,
			HeartbeatTimeout: 60 * time.Second,

			TransactionCheckDelay:    6 * time.Second,
			TransactionCheckInterval: 60 * time.Second,
			TransactionMaxChecks:     15,
		},
		Auth: AuthConfig{
			ReloadInterval: 10 * time.Second,
		},
		Runtime:               RuntimeConfig{GCPercent: 400},
		NamesrvMaxConnections: 10000,
		Native:                nativeconf.Default(),
		MQTT:                  mqttconf.Default(),
		Controller:            controllerconf.Default(),
		Replication:           replconf.Default(),
		AMQP:                  amqpconf.Default(),
	}
}

// Validate reports the first setting that is out of range, naming its key.
// Checks that need another package's knowledge (a segment must hold one
// message of the maximum size, say) are left to that package.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("data-dir: must not be empty")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format %q: want text or json", c.Log.Format)
	}
	if _, err := c.Log.SlogLevel(); err != nil {
		return fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	s := c.Storage
	switch s.Flush {
	case "sync", "async":
	default:
		return fmt.Errorf("storage.flush %q: want sync or async", s.Flush)
	}
	if err := s.validateSizes(); err != nil {
		return err
	}
	if s.RetentionDiskRatio > 1 {
		return fmt.Errorf("storage.retention-disk-ratio %v: want at most 1 (negative disables)", s.RetentionDiskRatio)
	}
	if q := c.Core.DefaultQueues; q < 1 || q > 1024 {
		return fmt.Errorf("core.default-queues %d: want 1..1024", q)
	}
	if c.Core.MaxRetries < 1 {
		return fmt.Errorf("core.max-retries %d: want at least 1", c.Core.MaxRetries)
	}
	if c.Core.HeartbeatTimeout <= 0 {
		return fmt.Errorf("core.heartbeat-timeout %v: must be positive", c.Core.HeartbeatTimeout)
	}
	if c.Core.TransactionCheckDelay <= 0 {
		return fmt.Errorf("core.transaction-check-delay %v: must be positive", c.Core.TransactionCheckDelay)
	}
	if c.Core.TransactionCheckInterval <= 0 {
		return fmt.Errorf("core.transaction-check-interval %v: must be positive", c.Core.TransactionCheckInterval)
	}
	if c.Core.TransactionMaxChecks < 1 {
		return fmt.Errorf("core.transaction-max-checks %d: want at least 1", c.Core.TransactionMaxChecks)
	}
	if c.HTTPAddr == "" {
		return errors.New("http-addr: must not be empty (off disables it)")
	}
	if c.NamesrvHTTPAddr == "" {
		return errors.New("namesrv-http-addr: must not be empty (off disables it)")
	}
	if err := checkBrokerName("broker.name", c.Broker.Name, true); err != nil {
		return err
	}
	if err := checkBrokerName("broker.cluster", c.Broker.Cluster, false); err != nil {
		return err
	}
	if c.Broker.ID < 0 || c.Broker.ID > maxBrokerID {
		return fmt.Errorf("broker.id: %d, want 0 to %d", c.Broker.ID, maxBrokerID)
	}
	if c.ClusterSecret != "" && c.ClusterSecretFile != "" {
		return errors.New("cluster-secret and cluster-secret-file: set one, not both")
	}
	if n := len(c.ClusterSecret); n > 0 && n < 16 {
		return fmt.Errorf("cluster-secret: %d bytes, want at least 16 (openssl rand -base64 32 makes one)", n)
	}
	if a := c.Auth; a.AllowAnonymous != nil && !*a.AllowAnonymous && a.PasswordFile == "" {
		return errors.New("auth.allow-anonymous false: no client could connect without auth.password-file")
	}
	if c.Auth.ReloadInterval < 0 {
		return fmt.Errorf("auth.reload-interval %v: must not be negative (0 disables reloading)", c.Auth.ReloadInterval)
	}
	if c.Runtime.GCPercent < -1 {
		return fmt.Errorf("runtime.gc-percent %d: want -1 (off) or more", c.Runtime.GCPercent)
	}
	if c.Runtime.MemoryLimit < 0 {
		return fmt.Errorf("runtime.memory-limit %d: must not be negative (0: none)", c.Runtime.MemoryLimit)
	}
	if c.NamesrvMaxConnections <= 0 {
		return fmt.Errorf("namesrv-max-connections %d: must be positive", c.NamesrvMaxConnections)
	}
	if err := c.Native.Validate(); err != nil {
		return err
	}
	if err := c.MQTT.Validate(); err != nil {
		return err
	}
	if err := c.Controller.Validate(); err != nil {
		return err
	}
	if err := c.Replication.Validate(); err != nil {
		return err
	}
	if err := c.AMQP.Validate(); err != nil {
		return err
	}
	return validateBridges(c.Bridges)
}

// checkBrokerName checks a broker or cluster name as cluster.CheckName
// does (config does not import the server packages): 1 to 64 bytes of
// letters, digits, '-', '_' and '.'; "" only when empty is allowed.
func checkBrokerName(key, name string, empty bool) error {
	if name == "" {
		if empty {
			return nil
		}
		return fmt.Errorf("%s: must not be empty", key)
	}
	if len(name) > 64 {
		return fmt.Errorf("%s: %d bytes, want at most 64", key, len(name))
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%s %q: %q is not allowed (letters, digits, '-', '_' and '.' are)", key, name, c)
		}
	}
	return nil
}

// SlogLevel parses Level.
func (l LogConfig) SlogLevel() (slog.Level, error) {
	var lvl slog.Level
	err := lvl.UnmarshalText([]byte(l.Level))
	return lvl, err
}

// EnvPrefix starts every environment variable Ferry reads.
const EnvPrefix = "FERRY_"

// FileEnv names the config file when no --config flag is given.
const FileEnv = EnvPrefix + "CONFIG"

// EnvName returns the environment variable that sets key:
// storage.segment-size → FERRY_STORAGE_SEGMENT_SIZE.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// Sources are where Load reads, besides the defaults.
type Sources struct {
	// File is the YAML file to read; "" reads FileEnv's file, if set, or none.
	File string
	// Environ holds "NAME=value" pairs as os.Environ returns them; only
	// FERRY_ ones are read, and an empty value counts as unset.
	Environ []string
	// Flags are read for the flags bound with AddFlag that were set.
	Flags *pflag.FlagSet
}

// Load reads the configuration from src over the defaults and validates it.
func Load(src Sources) (Config, error) {
	k := koanf.New(".")

	path := src.File
	if path == "" {
		path = lookupEnv(src.Environ, FileEnv)
	}
	var notes []string
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		fileNotes, err := renameFileKeys(k, path)
		if err != nil {
			return Config{}, err
		}
		notes = append(notes, fileNotes...)
	}

	environ, envNotes, err := renameEnv(src.Environ)
	if err != nil {
		return Config{}, err
	}
	notes = append(notes, envNotes...)

	byEnv := envKeys()
	err = k.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			if value == "" || name == FileEnv {
				return "", nil
			}
			key, ok := byEnv[name]
			if !ok {
				return "", nil
			}
			return key, value
		},
	}), nil)
	if err != nil {
		return Config{}, fmt.Errorf("environment: %w", err)
	}

	if src.Flags != nil {
		err := k.Load(posflag.ProviderWithFlag(src.Flags, ".", nil, func(f *pflag.Flag) (string, any) {
			keys := f.Annotations[keyAnnotation]
			if !f.Changed || len(keys) != 1 {
				return "", nil
			}
			return keys[0], posflag.FlagVal(src.Flags, f)
		}), nil)
		if err != nil {
			return Config{}, fmt.Errorf("flags: %w", err)
		}
	}

	cfg := Default()
	err = k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook: mapstructure.ComposeDecodeHookFunc(
				durationHook,
				mapstructure.TextUnmarshallerHookFunc(),
			),
			WeaklyTypedInput: true,
			ErrorUnused:      true,
		},
	})
	if err != nil {
		return Config{}, decodeError(path, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg.Notes = notes
	if err := resolvePasswords(cfg.Bridges, src.Environ); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// decodeError turns mapstructure's multi-line report into one line of
// "key: problem" parts. Only the file can hold unknown keys (the environment
// and the flags are read by key), so those name the file.
func decodeError(path string, err error) error {
	var errs []error
	if joined, ok := errors.Unwrap(err).(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	} else {
		errs = []error{err}
	}
	var parts []string
	for _, e := range errs {
		var de *mapstructure.DecodeError
		if !errors.As(e, &de) {
			parts = append(parts, e.Error())
			continue
		}
		inner := de.Unwrap().Error()
		if list, ok := strings.CutPrefix(inner, "has invalid keys: "); ok {
			for k := range strings.SplitSeq(list, ", ") {
				if de.Name() != "" {
					k = de.Name() + "." + k
				}
				parts = append(parts, fmt.Sprintf("unknown key %q in %s", k, path))
			}
			continue
		}
		parts = append(parts, de.Name()+": "+inner)
	}
	return fmt.Errorf("config: %s", strings.Join(parts, "; "))
}

// lookupEnv returns name's value in environ; the last one wins, as in os.Getenv.
func lookupEnv(environ []string, name string) string {
	var val string
	for _, kv := range environ {
		if n, v, ok := strings.Cut(kv, "="); ok && n == name {
			val = v
		}
	}
	return val
}
