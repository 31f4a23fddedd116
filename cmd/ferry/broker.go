package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/config"
)

func newBrokerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run a broker alone; it registers with the NameServers of --namesrv",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if dir, err := filepath.Abs(cfg.DataDir); err == nil {
				cfg.DataDir = dir
			}
			logger := newLogger(cfg.Log, cmd.ErrOrStderr())
			logConfigNotes(logger, cfg)
			return run(logger, func() fx.Option { return brokerOptions(cfg, logger) },
				append([]any{"role", "broker", "data-dir", cfg.DataDir, "namesrv", cfg.Namesrv}, tuneRuntime(cfg.Runtime)...)...)
		},
	}
	fs := cmd.Flags()
	config.AddFlag(fs, "namesrv", "namesrv", "NameServer addresses, comma separated")
	config.AddFlag(fs, "data-dir", "data-dir", "data directory, relative to the working directory")
	config.AddFlag(fs, "native-addr", "native.addr", "native (RocketMQ) protocol listen address; off disables it, :0 picks a free port")
	addNativeTLSFlags(fs)
	config.AddFlag(fs, "advertise-addr", "native.advertise-addr", "native address registered with the NameServers, which clients dial (default: the listen address)")
	addIdentityFlags(fs)
	addClusterFlags(fs)
	addReplicationFlags(fs)
	addServiceFlags(cmd)
	addStorageFlags(cmd)
	return cmd
}

// brokerOptions is the fx graph of ferry broker: serve's, registering with
// the configured NameServers and with no NameServer of its own.
func brokerOptions(cfg config.Config, logger *slog.Logger) fx.Option {
	nss := nameServers(cfg)
	if cfg.Controller.Addrs != "" {
		return replicatedOptions(cfg, logger, nss)
	}
	return serviceOptions(cfg, logger,
		clusterOptions(cfg, nss, 0),
		clusterOption(cfg, logger, false), // none: registrations go unsigned
		fx.Invoke(func() error {
			if len(nss) == 0 {
				return fmt.Errorf("no NameServer to register with: set --namesrv")
			}
			return nil
		}),
	)
}
