package main

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/controller"
	"github.com/ferrymq/ferry/monitor"
)

func newControllerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run a controller alone: one of the three or five Raft nodes that elect each broker group's master",
		Long: `Run a controller alone. Every controller is given the same --raft-peers
(id=host:port of each one's Raft transport) and its own --node-id; brokers
are given the controllers' --controller-addr addresses (controller.addrs).
A NameServer can run one too: ferry namesrv --controller.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log, cmd.ErrOrStderr())
			return run(logger, func() fx.Option { return controllerProcessOptions(cfg, logger) },
				append([]any{"role", "controller", "addr", cfg.Controller.Addr, "node", cfg.Controller.NodeID}, tuneRuntime(cfg.Runtime)...)...)
		},
	}
	fs := cmd.Flags()
	addControllerFlags(fs)
	config.AddFlag(fs, "data-dir", "data-dir", "data directory; the controller's state is in its controller/ unless --controller-dir says otherwise")
	config.AddFlag(fs, "http-addr", "controller.http-addr", "HTTP listen address for metrics and health; off disables it, :0 picks a free port")
	addClusterFlags(fs)
	return cmd
}

// addControllerFlags adds the flags of a controller's keys (ferry
// controller's, and ferry namesrv's for --controller).
func addControllerFlags(fs *pflag.FlagSet) {
	config.AddFlag(fs, "controller-addr", "controller.addr", "the controller's RPC listen address (brokers' heartbeats); :0 picks a free port")
	config.AddFlag(fs, "raft-addr", "controller.raft-addr", "the Raft transport's listen address; default: this node's address in --raft-peers")
	config.AddFlag(fs, "raft-peers", "controller.raft-peers", "every controller, this one included: id=host:port,… (Raft addresses; the same list on each)")
	config.AddFlag(fs, "node-id", "controller.node-id", "this controller's id in --raft-peers")
	config.AddFlag(fs, "controller-dir", "controller.dir", "the controller's Raft log, stable store and snapshots; default <data-dir>/controller")
	config.AddFlag(fs, "master-timeout", "controller.master-timeout", "a master silent this long is replaced")
	config.AddFlag(fs, "unclean-election", "controller.unclean-election", "elect a broker outside the in-sync set when no member of it is alive (loses what only the old master had)")
}

// controllerProcessOptions is the fx graph of ferry controller.
func controllerProcessOptions(cfg config.Config, logger *slog.Logger) fx.Option {
	return fx.Options(
		fx.Supply(logger),
		fx.WithLogger(fxLogger),
		fx.StopTimeout(stopTimeout),
		clusterOption(cfg, logger, false), // warns of a secret file others may read
		controllerOption(cfg),
		fx.Supply(monitor.Listen{Addr: cfg.Controller.HTTPAddr, Flag: "--http-addr"}),
		monitor.Module,
		fx.Invoke(addReadinessChecks),
		monitor.Ready,
	)
}

// controllerOption runs a controller in the application: it binds and
// starts Raft in OnStart (a taken port stops the start, naming the flag)
// and shuts down in OnStop. Its metrics go into the application's
// registry, and /readyz fails while it knows no Raft leader.
func controllerOption(cfg config.Config) fx.Option {
	secret, _, err := clusterSecret(cfg)
	if err != nil {
		return fx.Error(err)
	}
	ccfg := cfg.Controller
	if ccfg.Dir == "" {
		ccfg.Dir = filepath.Join(cfg.DataDir, "controller")
	}
	type params struct {
		fx.In
		Lifecycle fx.Lifecycle
		Logger    *slog.Logger
		Registry  *prometheus.Registry `optional:"true"`
	}
	type checks struct {
		fx.In
		Monitor    *monitor.Server `optional:"true"`
		Controller *controller.Server
	}
	// A module, whose invokes run before those of the modules after it
	// (the monitor's): its listeners start before the HTTP one.
	return fx.Module("controller",
		fx.Provide(func(p params) (*controller.Server, error) {
			s, err := controller.NewServer(ccfg, secret, p.Logger.With("component", "controller"))
			if err != nil {
				return nil, err
			}
			if p.Registry != nil {
				if err := p.Registry.Register(s); err != nil {
					return nil, err
				}
			}
			p.Lifecycle.Append(fx.Hook{
				OnStart: s.Start,
				OnStop:  func(context.Context) error { return s.Close() },
			})
			return s, nil
		}),
		fx.Invoke(func(*controller.Server) {}),
		fx.Invoke(func(c checks) {
			if c.Monitor != nil {
				c.Monitor.AddReadinessCheck("controller", c.Controller.Ready)
			}
		}),
	)
}

// addNamesrvControllerFlags adds ferry namesrv's --controller and the
// controller's flags.
func addNamesrvControllerFlags(fs *pflag.FlagSet) {
	config.AddFlag(fs, "controller", "controller.enabled", "run a controller in this process too (with --raft-peers and --node-id)")
	config.AddFlag(fs, "data-dir", "data-dir", "data directory; the controller's state is in its controller/ unless --controller-dir says otherwise")
	addControllerFlags(fs)
}

// namesrvControllerOption is ferry namesrv's controller, when
// controller.enabled says to run one.
func namesrvControllerOption(cfg config.Config) fx.Option {
	if !cfg.Controller.Enabled {
		return fx.Options()
	}
	return controllerOption(cfg)
}
