package core

import (
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/storage"
)

// Module provides the application's *Broker over its *storage.Store; the
// application provides a Config. The broker is closed when the application
// stops, before the store (fx stops in the reverse order of start).
var Module = fx.Module("core", fx.Provide(newFromFx))

func newFromFx(lc fx.Lifecycle, store *storage.Store, cfg Config) (*Broker, error) {
	b, err := New(store, cfg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(b.Close))
	return b, nil
}
