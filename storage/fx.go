package storage

import "go.uber.org/fx"

// Module provides the application's *Store to an fx graph. The store is
// opened, and so recovered, while the graph is built; it is closed when the
// application stops. The application provides a Params.
var Module = fx.Module("storage", fx.Provide(newFromFx))

// Params are what Module needs to open the store: Open's arguments.
type Params struct {
	Dir     string
	Options Options
}

func newFromFx(lc fx.Lifecycle, p Params) (*Store, error) {
	s, err := Open(p.Dir, p.Options)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(s.Close))
	return s, nil
}
