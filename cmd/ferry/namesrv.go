package main

import (
	"log/slog"

	"github.com/spf13/cobra"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/monitor"
	"github.com/ferrymq/ferry/namesrv"
)

func newNamesrvCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "namesrv",
		Short: "Run a NameServer alone (a cluster runs several, and brokers register with each)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log, cmd.ErrOrStderr())
			return run(logger, func() fx.Option { return namesrvOptions(cfg, logger) },
				append([]any{"role", "namesrv", "addr", cfg.NamesrvAddr}, tuneRuntime(cfg.Runtime)...)...)
		},
	}
	config.AddFlag(cmd.Flags(), "namesrv-addr", "namesrv-addr", "listen address; :0 picks a free port")
	config.AddFlag(cmd.Flags(), "http-addr", "namesrv-http-addr", "HTTP listen address for metrics and health; off disables it, :0 picks a free port")
	addClusterFlags(cmd.Flags())
	addNamesrvControllerFlags(cmd.Flags())
	return cmd
}

// namesrvOptions is the fx graph of ferry namesrv.
func namesrvOptions(cfg config.Config, logger *slog.Logger) fx.Option {
	return fx.Options(
		fx.Supply(logger, namesrv.Listen{Addr: cfg.NamesrvAddr, Flag: "--namesrv-addr", Limits: namesrvLimits(cfg)}),
		fx.WithLogger(fxLogger),
		fx.StopTimeout(stopTimeout),
		clusterOption(cfg, logger, false), // none: brokers register from loopback only
		namesrv.Module,
		namesrvControllerOption(cfg),
		fx.Supply(monitor.Listen{Addr: cfg.NamesrvHTTPAddr, Flag: "--http-addr"}),
		monitor.Module,
		fx.Invoke(addReadinessChecks),
		monitor.Ready,
	)
}
