package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// Listen is where the monitor listens ("off" disables it) and the flag
// that sets it.
type Listen struct {
	Addr string
	Flag string
}

type params struct {
	fx.In
	Lifecycle fx.Lifecycle
	Listen    Listen
	Registry  *prometheus.Registry
	Routes    []Route `group:"routes"`
	Logger    *slog.Logger
}

// Module provides the application's *prometheus.Registry (components
// register their collectors in it) and serves it with the routes
// components provide in the "routes" value group:
//
//	fx.Provide(fx.Annotate(newRoute, fx.ResultTags(`group:"routes"`)))
//
// It binds in OnStart (a taken port is an error naming the flag); see Ready.
var Module = fx.Module("monitor",
	fx.Provide(NewRegistry, newFromFx),
	fx.Invoke(func(*Server) {}),
)

func newFromFx(p params) (*Server, error) {
	s, err := New(p.Registry, p.Routes, p.Logger.With("component", "monitor"))
	if err != nil {
		return nil, err
	}
	if p.Listen.Addr == Off {
		return s, nil
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", p.Listen.Addr)
			if err != nil {
				return fmt.Errorf("monitor: cannot listen on %s (change it with %s): %w", p.Listen.Addr, p.Listen.Flag, err)
			}
			p.Logger.Info("http listening", "addr", ln.Addr().String())
			go s.Serve(ln)
			return nil
		},
		OnStop: s.Close,
	})
	return s, nil
}

// Ready makes /readyz answer ok once the application has started: give it
// last among the options, so that its start hook runs after every other.
var Ready = fx.Invoke(func(lc fx.Lifecycle, s *Server) {
	lc.Append(fx.StartHook(func() { s.SetReady(true) }))
})
