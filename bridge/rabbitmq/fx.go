package rabbitmq

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/monitor"
)

// Module runs the configured bridges in the application: they start (each
// connecting on its own goroutine) once the core is open, and stop before
// it closes. Their status is served on StatusPath and their metrics in the
// application's registry. No bridges configured: nothing runs.
var Module = fx.Module("rabbitmq-bridge",
	fx.Provide(newFromFx, fx.Annotate(statusRoute, fx.ResultTags(`group:"routes"`))),
	fx.Invoke(func(*Bridges) {}),
)

type params struct {
	fx.In
	Lifecycle fx.Lifecycle
	Broker    *core.Broker
	Config    config.Config
	Logger    *slog.Logger
	Registry  *prometheus.Registry `optional:"true"`
}

func newFromFx(p params) (*Bridges, error) {
	bs, err := NewBridges(p.Broker, Configs(p.Config.Bridges), p.Logger.With("component", "bridge"))
	if err != nil {
		return nil, err
	}
	if p.Registry != nil {
		if err := p.Registry.Register(bs); err != nil {
			return nil, err
		}
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error { bs.Start(); return nil },
		OnStop:  func(context.Context) error { return bs.Close() },
	})
	return bs, nil
}

func statusRoute(bs *Bridges) monitor.Route {
	return monitor.Route{Pattern: "GET " + StatusPath, Handler: bs}
}

// Configs maps the configuration file's bridges onto Config.
func Configs(in []config.BridgeConfig) []Config {
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
