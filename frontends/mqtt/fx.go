package mqtt

import (
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/core"
)

// Module provides the MQTT front-end over the application's *core.Broker;
// the application provides a Config. It starts serving when the
// application starts and closes (disconnecting clients, saving sessions)
// when it stops, before the core.
var Module = fx.Module("mqtt", fx.Provide(newFromFx), fx.Invoke(func(*Server) {}))

func newFromFx(lc fx.Lifecycle, b *core.Broker, cfg Config) (*Server, error) {
	s, err := New(b, cfg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StartStopHook(s.Start, s.Close))
	return s, nil
}
