package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/dig"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/ferrymq/ferry/admin"
	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/bridge/rabbitmq"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/console"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/plugin"
	"github.com/ferrymq/ferry/frontends/amqp"
	"github.com/ferrymq/ferry/frontends/mqtt"
	"github.com/ferrymq/ferry/frontends/native"
	"github.com/ferrymq/ferry/internal/rawio"
	"github.com/ferrymq/ferry/monitor"
	"github.com/ferrymq/ferry/namesrv"
	"github.com/ferrymq/ferry/storage"
)

// stopTimeout bounds a clean shutdown.
const stopTimeout = 30 * time.Second

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the all-in-one server with an embedded data directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log, cmd.ErrOrStderr())
			logConfigNotes(logger, cfg)
			return serve(cfg, logger)
		},
	}
	fs := cmd.Flags()
	config.AddFlag(fs, "data-dir", "data-dir", "data directory, relative to the working directory")
	config.AddFlag(fs, "namesrv-addr", "namesrv-addr", "NameServer listen address; off disables it, :0 picks a free port")
	config.AddFlag(fs, "native-addr", "native.addr", "native (RocketMQ) protocol listen address; off disables it, :0 picks a free port")
	addNativeTLSFlags(fs)
	addIdentityFlags(fs)
	addClusterFlags(fs)
	addServiceFlags(cmd)
	addStorageFlags(cmd)
	return cmd
}

// addServiceFlags adds the flags of the listeners every broker process has
// besides the native protocol: MQTT, AMQP and HTTP.
func addServiceFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	config.AddFlag(fs, "mqtt-addr", "mqtt.addr", "MQTT listen address; off disables it, :0 picks a free port")
	config.AddFlag(fs, "mqtt-ws-addr", "mqtt.ws-addr", "MQTT over WebSocket (path /mqtt) listen address; off disables it")
	config.AddFlag(fs, "mqtt-tls-addr", "mqtt.tls-addr", "MQTT over TLS listen address (on when mqtt.tls-cert and mqtt.tls-key are set); off disables it")
	config.AddFlag(fs, "amqp-addr", "amqp.addr", "AMQP 0-9-1 listen address; off disables it, :0 picks a free port")
	config.AddFlag(fs, "amqp-tls-addr", "amqp.tls-addr", "AMQP over TLS listen address (on when amqp.tls-cert and amqp.tls-key are set); off disables it")
	config.AddFlag(fs, "http-addr", "http-addr", "HTTP listen address for metrics, health and status; off disables it, :0 picks a free port")
}

// addStorageFlags adds the flags of the store and the core, which every
// command that runs a broker takes.
func addStorageFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	config.AddFlag(fs, "segment-size", "storage.segment-size", "size of one commit-log segment file, in bytes")
	config.AddFlag(fs, "max-message-size", "storage.max-message-size", "largest message accepted (body, subject, keys and properties), in bytes")
	config.AddFlag(fs, "flush", "storage.flush", "when a stored message is durable: sync (on disk) or async (in the OS, fsynced every --flush-interval)")
	config.AddFlag(fs, "flush-interval", "storage.flush-interval", "longest an async append stays unsynced")
	config.AddFlag(fs, "retention-age", "storage.retention-age", "delete sealed segments older than this (negative disables)")
	config.AddFlag(fs, "retention-disk-ratio", "storage.retention-disk-ratio", "delete the oldest segments while the disk is fuller than this (negative disables)")
	config.AddFlag(fs, "auto-create-topics", "core.auto-create-topics", "create a topic on its first publish")
	config.AddFlag(fs, "default-queues", "core.default-queues", "queues of a topic created without a count")
	config.AddFlag(fs, "max-retries", "core.max-retries", "retries of a failed message before the group's dead-letter topic")
	config.AddFlag(fs, "heartbeat-timeout", "core.heartbeat-timeout", "drop a consumer-group member silent this long")
	config.AddFlag(fs, "transaction-check-delay", "core.transaction-check-delay", "first check of an unresolved transactional half message with its producer group")
	config.AddFlag(fs, "transaction-check-interval", "core.transaction-check-interval", "time between checks of an unresolved half message")
	config.AddFlag(fs, "transaction-max-checks", "core.transaction-max-checks", "checks of an unresolved half message before it is discarded")
}

// serve runs Ferry until SIGINT or SIGTERM, then stops it cleanly.
func serve(cfg config.Config, logger *slog.Logger) error {
	if dir, err := filepath.Abs(cfg.DataDir); err == nil {
		cfg.DataDir = dir
	}
	return run(logger, func() fx.Option { return appOptions(cfg, logger) },
		append([]any{"data-dir", cfg.DataDir, "flush", cfg.Storage.Flush, "flush-interval", cfg.Storage.FlushInterval.String(),
			"fsync", rawio.Via()},
			tuneRuntime(cfg.Runtime)...)...)
}

// run builds the fx application that options makes, starts it, and stops it
// cleanly on SIGINT or SIGTERM. attrs describe it in the start log line.
func run(logger *slog.Logger, options func() fx.Option, attrs ...any) error {
	slog.SetDefault(logger)

	// Catch the signals from now on: one that arrives while the store is
	// recovering stops Ferry as soon as it has started, cleanly.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	logger.Info("ferry starting", append([]any{"version", buildVersion()}, attrs...)...)
	app := fx.New(options())
	if err := app.Err(); err != nil {
		return fmt.Errorf("cannot start: %w", dig.RootCause(err))
	}
	startCtx, cancel := context.WithTimeout(context.Background(), app.StartTimeout())
	defer cancel()
	if err := app.Start(startCtx); err != nil {
		return fmt.Errorf("cannot start: %w", dig.RootCause(err))
	}
	logger.Info("ferry ready")

	var exitCode int
	select {
	case sig := <-sigs:
		logger.Info("ferry stopping", "signal", sig.String())
	case s := <-app.Wait(): // fx.Shutdowner
		logger.Info("ferry stopping", "reason", s.String())
		exitCode = s.ExitCode
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), app.StopTimeout())
	defer cancel()
	if err := app.Stop(stopCtx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	logger.Info("ferry stopped")
	if exitCode != 0 {
		return fmt.Errorf("shut down with exit code %d", exitCode)
	}
	return nil
}

// appOptions is the fx graph of ferry serve.
func appOptions(cfg config.Config, logger *slog.Logger) fx.Option {
	roles := []fx.Option{clusterOption(cfg, logger, true)} // a random key when none is set: the NameServer and the broker share it here
	if cfg.NamesrvAddr != "off" {
		roles = append(roles, fx.Supply(namesrv.Listen{Addr: cfg.NamesrvAddr, Flag: "--namesrv-addr", Limits: namesrvLimits(cfg)}), namesrv.Module)
	}
	// The broker registers with the NameServer of its own process only.
	roles = append(roles, clusterOptions(cfg, nil, 0))
	return serviceOptions(cfg, logger, roles...)
}

// addNativeTLSFlags adds the flags of the native listener's certificate.
func addNativeTLSFlags(fs *pflag.FlagSet) {
	config.AddFlag(fs, "native-tls-cert", "native.tls-cert", "PEM certificate: the native listener serves TLS only (with --native-tls-key)")
	config.AddFlag(fs, "native-tls-key", "native.tls-key", "PEM key of --native-tls-cert")
}

// plugins are the front-ends and bridges: each package's Plugin is its fx
// module as the configuration switches it on, registering into
// core/plugin's value group. A new front-end is one line here.
var plugins = []func(config.Config) fx.Option{
	native.Plugin,
	mqtt.Plugin,
	amqp.Plugin,
	rabbitmq.Plugin,
}

// servingOptions is the fx graph of the part of a broker process that
// serves clients: the core over the application's store, the roles given,
// and the plug-ins (front-ends and bridges) the configuration switches on,
// run by core/plugin after the core and the NameServer. A replicated
// broker runs it only while it is its group's master (replicatedOptions).
func servingOptions(cfg config.Config, roles ...fx.Option) fx.Option {
	roles = append(roles, fx.Provide(authConfig), auth.Module)          // one set of rules for every front-end
	roles = append(roles, admin.Module(buildVersion()), console.Module) // the admin API and the web console on the HTTP port
	for _, p := range plugins {
		roles = append(roles, p(cfg))
	}
	return fx.Options(
		fx.Options(roles...),
		plugin.Module,
		fx.Provide(coreConfig),
		core.Module,
		fx.Invoke(func(*core.Broker) {}), // open the core even before a front-end uses it
	)
}

// serviceOptions is the fx graph every single-node broker process shares
// (serve, and broker without controllers): the store, the serving part
// with the roles given, and the HTTP monitor.
func serviceOptions(cfg config.Config, logger *slog.Logger, roles ...fx.Option) fx.Option {
	return fx.Options(
		servingOptions(cfg, roles...),
		processOptions(cfg, logger),
		fx.Invoke(addReadinessChecks),
		monitor.Ready, // last: ready once everything else has started
	)
}

// processOptions are what a broker process has whatever its role: the
// configuration, the logger, the store and the HTTP monitor.
func processOptions(cfg config.Config, logger *slog.Logger) fx.Option {
	return fx.Options(
		fx.Supply(cfg, logger),
		fx.WithLogger(fxLogger),
		fx.StopTimeout(stopTimeout),
		fx.Provide(storageParams),
		storage.Module,
		fx.Supply(monitor.Listen{Addr: cfg.HTTPAddr, Flag: "--http-addr"}),
		monitor.Module,
	)
}

// fxLogger logs fx's own events, errors included, at debug level: a failure
// reaches the user once, as the error serve returns.
func fxLogger(logger *slog.Logger) fxevent.Logger {
	l := &fxevent.SlogLogger{Logger: logger.With("component", "fx")}
	l.UseLogLevel(slog.LevelDebug)
	l.UseErrorLevel(slog.LevelDebug)
	return l
}

// coreConfig maps the configuration onto core.Module's needs.
func coreConfig(cfg config.Config, logger *slog.Logger) core.Config {
	c := cfg.Core
	return core.Config{
		AutoCreateTopics: c.AutoCreateTopics,
		DefaultQueues:    c.DefaultQueues,
		MaxRetries:       c.MaxRetries,
		HeartbeatTimeout: c.HeartbeatTimeout,

		TransactionCheckDelay:    c.TransactionCheckDelay,
		TransactionCheckInterval: c.TransactionCheckInterval,
		TransactionMaxChecks:     c.TransactionMaxChecks,
		Logger:                   logger.With("component", "core"),
	}
}

// storageParams maps the configuration onto storage.Module's needs.
func storageParams(cfg config.Config, logger *slog.Logger) storage.Params {
	s := cfg.Storage
	return storage.Params{
		Dir: cfg.DataDir,
		Options: storage.Options{
			SegmentSize:        s.SegmentSize,
			MaxMessageSize:     s.MaxMessageSize,
			FlushMode:          storage.FlushMode(s.Flush),
			FlushInterval:      s.FlushInterval,
			RetentionAge:       s.RetentionAge,
			RetentionDiskRatio: s.RetentionDiskRatio,
			Logger:             logger.With("component", "storage"),
		},
	}
}
