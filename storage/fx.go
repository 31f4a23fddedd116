package storage

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// Module provides the application's *Store to an fx graph. The store is
// opened, and so recovered, while the graph is built; it is closed when the
// application stops. The application provides a Params; the store's metrics
// go into the application's *prometheus.Registry when there is one.
var Module = fx.Module("storage", fx.Provide(newFromFx))

// Params are what Module needs to open the store: Open's arguments.
type Params struct {
	Dir     string
	Options Options
}

type fxParams struct {
	fx.In
	Lifecycle fx.Lifecycle
	Params    Params
	Registry  *prometheus.Registry `optional:"true"`
}

func newFromFx(p fxParams) (*Store, error) {
	s, err := Open(p.Params.Dir, p.Params.Options)
	if err != nil {
		return nil, err
	}
	if p.Registry != nil {
		if err := p.Registry.Register(NewCollector(s)); err != nil {
			s.Close()
			return nil, err
		}
	}
	p.Lifecycle.Append(fx.StopHook(s.Close))
	return s, nil
}
