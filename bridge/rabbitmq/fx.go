package rabbitmq

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/bridge/rabbitmq/fileconf"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/plugin"
	"github.com/ferrymq/ferry/monitor"
)

// Module runs the configured bridges in the application as one plug-in
// (package core/plugin) named "rabbitmq-bridge": they start (each
// connecting on its own goroutine) when the plug-ins start, after the core
// opens, and stop before it closes. Their status is served on StatusPath
// and their metrics in the application's registry. No bridges configured:
// nothing runs.
var Module = fx.Module("rabbitmq-bridge",
	fx.Provide(newFromFx, fx.Annotate(statusRoute, fx.ResultTags(`group:"routes"`))),
	fx.Invoke(func(*Bridges) {}),
)

// Plugin is Module when the configuration file has bridges, nothing
// otherwise.
func Plugin(cfg config.Config) fx.Option {
	if len(cfg.Bridges) == 0 {
		return fx.Options()
	}
	return Module
}

type params struct {
	fx.In
	Broker   *core.Broker
	Config   config.Config
	Logger   *slog.Logger
	Registry *prometheus.Registry `optional:"true"`
}

type result struct {
	fx.Out
	Bridges *Bridges
	Plugin  plugin.Plugin `group:"plugins"`
}

func newFromFx(p params) (result, error) {
	bs, err := NewBridges(p.Broker, Configs(p.Config.Bridges), p.Logger.With("component", "bridge"))
	if err != nil {
		return result{}, err
	}
	if p.Registry != nil {
		if err := p.Registry.Register(bs); err != nil {
			return result{}, err
		}
	}
	start := func(context.Context) error { bs.Start(); return nil } // each bridge connects (and retries) on its own goroutine
	stop := func(context.Context) error { return bs.Close() }
	return result{Bridges: bs, Plugin: plugin.Funcs("rabbitmq-bridge", start, stop, nil)}, nil
}

func statusRoute(bs *Bridges) monitor.Route {
	return monitor.Route{Pattern: "GET " + StatusPath, Handler: bs}
}

// Configs maps the configuration file's bridges onto Config.
func Configs(in []fileconf.Bridge) []Config {
	out := make([]Config, 0, len(in))
	for _, c := range in {
		bc := Config{
			Name: c.Name, Direction: Direction(c.Direction), URL: c.URL, Origin: c.Origin,
			Topic: c.Topic, Filter: c.Filter, Start: c.Start,
			Exchange: c.Exchange, DeclareExchange: c.DeclareExchange, ExchangeKind: c.ExchangeKind, RoutingKey: c.RoutingKey,
			Window: c.Window, OnNack: Policy(c.OnNack), OnReturn: Policy(c.OnReturn), DeadLetterTopic: c.DeadLetterTopic,
			MaxHops: c.MaxHops, Queue: c.Queue.Name, DeclareQueue: c.Queue.Declare, Prefetch: c.Prefetch,
			BackoffMin: c.BackoffMin, BackoffMax: c.BackoffMax, Heartbeat: c.Heartbeat, Timeout: c.Timeout,
			ConfirmTimeout: c.ConfirmTimeout, BlockedTimeout: c.BlockedTimeout, LagInterval: c.LagInterval,
		}
		for _, b := range c.Queue.Bindings {
			bc.Bindings = append(bc.Bindings, Binding{Exchange: b.Exchange, Key: b.Key})
		}
		out = append(out, bc)
	}
	return out
}
