package mqtt

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/core"
)

// Module provides the MQTT front-end over the application's *core.Broker;
// the application provides a Config. It starts serving when the
// application starts and closes (disconnecting clients, saving sessions)
// when it stops, before the core.
var Module = fx.Module("mqtt", fx.Provide(newFromFx), fx.Invoke(func(*Server) {}))

type params struct {
	fx.In
	Lifecycle fx.Lifecycle
	Broker    *core.Broker
	Config    Config
	Registry  *prometheus.Registry `optional:"true"`
}

func newFromFx(p params) (*Server, error) {
	s, err := New(p.Broker, p.Config)
	if err != nil {
		return nil, err
	}
	if p.Registry != nil {
		if err := p.Registry.Register(s); err != nil {
			return nil, err
		}
	}
	p.Lifecycle.Append(fx.StartStopHook(s.Start, s.Close))
	return s, nil
}
