package main

import (
	"log/slog"

	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core/plugin"
	"github.com/ferrymq/ferry/frontends/native"
)

// addIdentityFlags adds the flags of the broker's identity (docs/cluster.md).
func addIdentityFlags(fs *pflag.FlagSet) {
	config.AddFlag(fs, "broker-name", "broker.name",
		"this broker's name at the NameServers, one per broker of a cluster (default: the one recorded in the data directory, or derived from the host and the data directory on the first start)")
	config.AddFlag(fs, "cluster", "broker.cluster", "the cluster this broker registers in")
}

// clusterOptions is the broker's identity and registrar: it registers with
// nss (and the in-process NameServer of ferry serve, when there is one) the
// address of the native front-end when it listens, else advertise-addr,
// else none (docs/cluster.md).
func clusterOptions(cfg config.Config, nss []string) fx.Option {
	return fx.Options(
		fx.Supply(cluster.Settings{Config: cluster.Config{Cluster: cfg.Broker.Cluster, Name: cfg.Broker.Name}, NameServers: nss, Advertise: cfg.AdvertiseAddr}),
		cluster.Module,
	)
}

// nativeOptions is the native front-end, when native-addr is not off: the
// cluster's Endpoint, whose address the broker registers.
func nativeOptions(cfg config.Config) fx.Option {
	if cfg.NativeAddr == "off" {
		return fx.Options()
	}
	return fx.Options(
		fx.Supply(native.Listen{Addr: cfg.NativeAddr, Flag: "--native-addr", TLSCert: cfg.NativeTLSCert, TLSKey: cfg.NativeTLSKey, Advertise: cfg.AdvertiseAddr, Limits: nativeLimits(cfg)}),
		native.Module,
		// The registrar registers the address the native plug-in bound: it
		// starts after the plug-ins, which the *plugin.Runner orders.
		fx.Provide(func(s *native.Server, _ *plugin.Runner) cluster.Endpoint { return s }),
	)
}

// logConfigNotes logs what loading the configuration noted (a deprecated
// key) at WARN.
func logConfigNotes(logger *slog.Logger, cfg config.Config) {
	for _, n := range cfg.Notes {
		logger.Warn(n)
	}
}
