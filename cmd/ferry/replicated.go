package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"go.uber.org/dig"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/controller"
	"github.com/ferrymq/ferry/core/plugin"
	"github.com/ferrymq/ferry/monitor"
	"github.com/ferrymq/ferry/replication"
	"github.com/ferrymq/ferry/storage"
)

// replicatedOptions is the fx graph of a broker of a replicated group
// (controller.addrs set, docs/replication.md): the store, the monitor and
// the role manager. The serving part (core, front-ends, bridges,
// registrar) is an fx application of its own, which the role manager
// starts while the broker is its group's master and stops when it is not.
func replicatedOptions(cfg config.Config, logger *slog.Logger, nss []string) fx.Option {
	return fx.Options(
		processOptions(cfg, logger),
		clusterOption(cfg, logger, false),
		fx.Invoke(startRole(nss)),
		monitor.Ready,
	)
}

type roleParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Shutdowner fx.Shutdowner
	Config     config.Config
	Logger     *slog.Logger
	Store      *storage.Store
	Monitor    *monitor.Server
	Registry   *prometheus.Registry
	Key        *clusterauth.Key `optional:"true"`
}

// startRole binds the replication listener and runs the role manager.
func startRole(nss []string) func(p roleParams) error {
	return func(p roleParams) error {
		cfg := p.Config
		logger := p.Logger.With("component", "cluster")
		if cfg.Broker.Name == "" {
			return errors.New("a replicated broker needs its group's name: set --broker-name (config broker.name), the same on every broker of the group")
		}
		if cfg.Broker.ID == 0 {
			// The routes show the master as id 0: a replica registers under
			// its own id, so one of id 0 cannot serve reads while a replica.
			logger.Warn("broker.id 0: this broker serves no reads while it is a replica (the routes show the master as id 0); give a group's brokers ids 1, 2, 3…")
		}
		half := &servingHalf{cfg: cfg, logger: p.Logger, store: p.Store, key: p.Key, nss: nss, mon: p.Monitor}
		secret, _, err := clusterSecret(cfg)
		if err != nil {
			return err
		}
		ctl := controller.NewClient(splitAddrs(cfg.Controller.Addrs), secret, logger)
		var role *cluster.RoleManager
		p.Lifecycle.Append(fx.Hook{
			OnStart: func(context.Context) error {
				ln, err := net.Listen("tcp", cfg.Replication.Addr)
				if err != nil {
					return fmt.Errorf("replication: cannot listen on %s (change it with --replication-addr): %w", cfg.Replication.Addr, err)
				}
				logger.Info("replication listening", "addr", ln.Addr().String())
				role = cluster.NewRoleManager(cluster.RoleOptions{
					Identity:    cluster.Identity{Cluster: cfg.Broker.Cluster, Name: cfg.Broker.Name, ID: cfg.Broker.ID},
					Store:       p.Store,
					Controller:  ctl,
					Replication: replicationConfig(cfg, p.Key),
					Listener:    ln,
					Advertise:   cfg.Replication.AdvertiseAddr,
					NativeAddr:  half.nativeAddr,
					Serving:     half,
					Fatal: func(err error) {
						logger.Error("cluster: stopping: this broker cannot serve as its group's master", "err", err)
						p.Shutdowner.Shutdown(fx.ExitCode(1))
					},
					Lease:  cfg.Replication.Lease,
					Logger: logger,
				})
				if err := p.Registry.Register(cluster.NewRoleCollector(role)); err != nil {
					return err
				}
				if err := p.Registry.Register(replication.NewCollector(role.ReplicaStatus)); err != nil {
					return err
				}
				p.Monitor.AddReadinessCheck("role", role.Ready)
				role.Start()
				return nil
			},
			OnStop: func(context.Context) error {
				defer ctl.Close()
				if role == nil {
					return nil
				}
				return role.Close()
			},
		})
		return nil
	}
}

// addReplicationFlags adds the flags of a broker of a replicated group.
func addReplicationFlags(fs *pflag.FlagSet) {
	config.AddFlag(fs, "controllers", "controller.addrs", "the controllers' addresses, comma separated: the broker is one of a replicated group, its role theirs to decide (docs/replication.md)")
	config.AddFlag(fs, "replication-addr", "replication.addr", "where a master serves its replicas; off disables it, :0 picks a free port")
	config.AddFlag(fs, "replication-mode", "replication.mode", "async (acknowledge once the master has it) or sync (once min-insync-replicas members have it)")
	config.AddFlag(fs, "min-insync-replicas", "replication.min-insync-replicas", "members of the group, master included, that must have a write before a sync master acknowledges it")
}

// splitAddrs splits a comma-separated address list.
func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// servingHalf is a replicated broker's serving part as a cluster.Serving:
// an fx application of servingOptions over the process's store, whose
// metrics, routes and readiness checks the process's monitor serves while
// it runs.
type servingHalf struct {
	cfg    config.Config
	logger *slog.Logger
	store  *storage.Store
	key    *clusterauth.Key
	nss    []string
	mon    *monitor.Server

	mu       sync.Mutex
	app      *fx.App
	detach   func()
	endpoint cluster.Endpoint
}

// servingParts are what the monitor serves of the serving part.
type servingParts struct {
	fx.In
	Routes   []monitor.Route  `group:"routes"`
	Plugins  *plugin.Runner   `optional:"true"`
	Endpoint cluster.Endpoint `optional:"true"`
}

func (h *servingHalf) Start(ctx context.Context, mode cluster.ServingMode, epoch int64) error {
	reg := prometheus.NewRegistry()
	var parts servingParts
	var opts []fx.Option
	if mode == cluster.ServeReader {
		if h.cfg.Broker.ID <= 0 {
			return fmt.Errorf("a replica serves reads under its broker id, which must be above 0 (0 is the master's in the routes): set --broker-id")
		}
		opts = readerHalfOptions(h.cfg, h.logger, h.store, reg, h.key, h.nss, epoch)
	} else {
		opts = servingHalfOptions(h.cfg, h.logger, h.store, reg, h.key, h.nss, epoch)
	}
	opts = append(opts, fx.Populate(&parts))
	app := fx.New(opts...)
	if err := app.Err(); err != nil {
		return dig.RootCause(err)
	}
	if err := app.Start(ctx); err != nil {
		return dig.RootCause(err)
	}
	checks := map[string]func() error{}
	if parts.Plugins != nil {
		for _, pl := range parts.Plugins.Plugins() {
			if c, ok := pl.(plugin.Checker); ok {
				checks[pl.Name()] = c.Ready
			}
		}
	}
	detach, err := h.mon.Attach(reg, parts.Routes, checks)
	if err != nil {
		app.Stop(ctx)
		return err
	}
	h.mu.Lock()
	h.app, h.detach, h.endpoint = app, detach, parts.Endpoint
	h.mu.Unlock()
	return nil
}

func (h *servingHalf) Stop(ctx context.Context) error {
	h.mu.Lock()
	app, detach := h.app, h.detach
	h.app, h.detach, h.endpoint = nil, nil, nil
	h.mu.Unlock()
	if app == nil {
		return nil
	}
	detach()
	return app.Stop(ctx)
}

// servingHalfOptions is the fx graph of a replicated broker's serving
// part, as the master of epoch.
func servingHalfOptions(cfg config.Config, logger *slog.Logger, store *storage.Store, reg *prometheus.Registry,
	key *clusterauth.Key, nss []string, epoch int64) []fx.Option {
	return halfOptions(servingOptions(cfg, clusterOptions(cfg, nss, epoch)), cfg, logger, store, reg, key)
}

// halfOptions is the fx graph of a serving part, master's or reader's,
// over the process's store, configuration and cluster key.
func halfOptions(part fx.Option, cfg config.Config, logger *slog.Logger, store *storage.Store, reg *prometheus.Registry,
	key *clusterauth.Key) []fx.Option {
	opts := []fx.Option{
		part,
		fx.Supply(cfg, logger, store, reg),
		fx.WithLogger(fxLogger),
		fx.StopTimeout(stopTimeout),
	}
	if key != nil {
		opts = append(opts, fx.Supply(key))
	}
	return opts
}

// nativeAddr is where clients reach the serving part natively, "" when it
// does not run.
func (h *servingHalf) nativeAddr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.endpoint == nil {
		return ""
	}
	return h.endpoint.Addr()
}

// replicationConfig maps the configuration onto the replication's.
func replicationConfig(cfg config.Config, key *clusterauth.Key) replication.Config {
	r := cfg.Replication
	return replication.Config{Mode: r.Mode, MinInsync: r.MinInsyncReplicas, MaxLag: r.MaxLag, MaxLagTime: r.MaxLagTime,
		MaxFrame: r.MaxFrame, Group: cfg.Broker.Name, Key: key}
}
