package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/plugin"
	"github.com/ferrymq/ferry/frontends/native"
	"github.com/ferrymq/ferry/storage"
)

// readerHalfOptions is the fx graph of a replica's serving part
// (RocketMQ's read from slave, docs/replication.md): a follower core over
// the copied log, the native front-end alone (MQTT, AMQP and the bridges
// would take writes a replica cannot), registered with the NameServers
// under the broker's own id, beside the master's id 0 in the routes.
func readerHalfOptions(cfg config.Config, logger *slog.Logger, store *storage.Store, reg *prometheus.Registry,
	key *clusterauth.Key, nss []string, epoch int64) []fx.Option {
	ids := fx.Supply(cluster.Settings{Config: cluster.Config{Cluster: cfg.Broker.Cluster, Name: cfg.Broker.Name, ID: cfg.Broker.ID},
		NameServers: nss, Advertise: cfg.Native.AdvertiseAddr, Epoch: epoch})
	reader := fx.Options(
		ids, cluster.Module,
		fx.Provide(authConfig), auth.Module,
		native.Plugin(cfg),
		plugin.Module,
		fx.Provide(func(cfg config.Config, logger *slog.Logger) core.Config {
			c := coreConfig(cfg, logger)
			c.Follower = true
			return c
		}),
		core.Module,
		fx.Invoke(func(*core.Broker) {}),
	)
	return halfOptions(reader, cfg, logger, store, reg, key)
}
