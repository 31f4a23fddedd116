package main

import (
	"log/slog"

	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/config"
)

// addIdentityFlags adds the flags of the broker's identity (docs/cluster.md).
func addIdentityFlags(fs *pflag.FlagSet) {
	config.AddFlag(fs, "broker-name", "broker.name",
		"this broker's name at the NameServers, one per broker of a cluster (default: the one recorded in the data directory, or derived from the host and the data directory on the first start)")
	config.AddFlag(fs, "cluster", "broker.cluster", "the cluster this broker registers in")
	config.AddFlag(fs, "broker-id", "broker.id", "this broker's id in its replicated group (0, 1, 2…; which one is master the controllers decide)")
}

// clusterOptions is the broker's identity and registrar: it registers with
// nss (and the in-process NameServer of ferry serve, when there is one) the
// address of the native front-end when it listens, else
// native.advertise-addr, else none (docs/cluster.md).
// epoch is the controllers' epoch of the master a replicated broker is, 0
// without controllers.
func clusterOptions(cfg config.Config, nss []string, epoch int64) fx.Option {
	return fx.Options(
		fx.Supply(cluster.Settings{Config: cluster.Config{Cluster: cfg.Broker.Cluster, Name: cfg.Broker.Name}, NameServers: nss,
			Advertise: cfg.Native.AdvertiseAddr, Epoch: epoch}),
		cluster.Module,
	)
}

// logConfigNotes logs what loading the configuration noted (a deprecated
// key) at WARN.
func logConfigNotes(logger *slog.Logger, cfg config.Config) {
	for _, n := range cfg.Notes {
		logger.Warn(n)
	}
}
