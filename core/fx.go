package core

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/storage"
)

// Module provides the application's *Broker over its *storage.Store; the
// application provides a Config. The broker is closed when the application
// stops, before the store (fx stops in the reverse order of start). Its
// topic and group metrics go into the application's *prometheus.Registry
// when there is one.
var Module = fx.Module("core", fx.Provide(newFromFx))

type params struct {
	fx.In
	Lifecycle fx.Lifecycle
	Store     *storage.Store
	Config    Config
	Registry  *prometheus.Registry `optional:"true"`
}

func newFromFx(p params) (*Broker, error) {
	b, err := New(p.Store, p.Config)
	if err != nil {
		return nil, err
	}
	if p.Registry != nil {
		if err := p.Registry.Register(NewCollector(b)); err != nil {
			b.Close()
			return nil, err
		}
	}
	p.Lifecycle.Append(fx.StopHook(b.Close))
	return b, nil
}
