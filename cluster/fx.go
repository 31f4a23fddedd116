package cluster

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/namesrv"
)

// Settings are what Module takes from the configuration.
type Settings struct {
	Config Config
	// NameServers to register with, besides the application's own.
	NameServers []string
	// Advertise is registered when there is no Endpoint
	// (RegistrarOptions.Advertise).
	Advertise string
	// Interval is the registration interval; 0 is 30 s.
	Interval time.Duration
	// Epoch is the controller's epoch of the master this broker is
	// (RegistrarOptions.Epoch); 0 without a controller.
	Epoch int64
}

type params struct {
	fx.In
	Lifecycle fx.Lifecycle
	Broker    *core.Broker
	Settings  Settings
	Logger    *slog.Logger
	// Endpoint is the native front-end, when it listens.
	Endpoint Endpoint `optional:"true"`
	// NameSrv is ferry serve's in-process NameServer, registered with too.
	NameSrv *namesrv.Server `optional:"true"`
	// ClusterKey signs the registrations (RegistrarOptions.ClusterKey).
	ClusterKey *clusterauth.Key     `optional:"true"`
	Registry   *prometheus.Registry `optional:"true"`
}

// Module provides the broker's Identity (resolved from the configuration
// and the data directory, where it is recorded) and its *Registrar, which
// starts after the front-ends and the in-process NameServer (it depends
// on them) and stops before them, unregistering. Its metrics go into the
// application's *prometheus.Registry when there is one.
var Module = fx.Module("cluster", fx.Provide(newFromFx, func(r *Registrar) Identity { return r.Identity() }),
	fx.Invoke(func(*Registrar) {}))

func newFromFx(p params) (*Registrar, error) {
	state, err := p.Broker.State(StateNamespace)
	if err != nil {
		return nil, err
	}
	res, err := Resolve(state, p.Broker.DataDir(), p.Settings.Config)
	if err != nil {
		return nil, err
	}
	logger := p.Logger.With("component", "cluster")
	r, err := NewRegistrar(p.Broker, RegistrarOptions{Identity: res.Identity, NameServers: p.Settings.NameServers,
		Interval: p.Settings.Interval, Endpoint: p.Endpoint, Advertise: p.Settings.Advertise, ClusterKey: p.ClusterKey, Epoch: p.Settings.Epoch, Logger: logger})
	if err != nil {
		return nil, err
	}
	if p.Registry != nil {
		if err := p.Registry.Register(r); err != nil {
			return nil, err
		}
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			if p.NameSrv != nil { // listening by now: its OnStart ran first
				r.mu.Lock() // Stats reads it
				r.opts.NameServers = append(r.opts.NameServers, Reachable(p.NameSrv.Addr()))
				r.mu.Unlock()
			}
			id := res.Identity
			attrs := []any{"cluster", id.Cluster, "broker", id.Name, "id", id.ID, "role", id.Role(), "name_from", string(res.Source),
				"recorded_in", p.Broker.DataDir(), "namesrv", r.opts.NameServers}
			if res.Previous != "" {
				attrs = append(attrs, "previous_name", res.Previous)
			}
			if addr, reachable, _ := r.Addr(); !reachable {
				attrs = append(attrs, "registered_addr", addr)
			}
			logger.Info("broker identity", attrs...)
			r.Start()
			return nil
		},
		OnStop: func(context.Context) error { return r.Close() },
	})
	return r, nil
}
