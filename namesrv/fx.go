package namesrv

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"go.uber.org/fx"
)

// Listen is where the application's NameServer listens, and the flag that
// sets it (for the error when the port is taken).
type Listen struct {
	Addr string
	Flag string
}

// Module runs a NameServer in the application: it binds in OnStart (a port
// that is taken stops the start with an error naming the flag) and closes
// in OnStop.
var Module = fx.Module("namesrv", fx.Provide(newFromFx), fx.Invoke(func(*Server) {}))

func newFromFx(lc fx.Lifecycle, l Listen, logger *slog.Logger) *Server {
	s := New(Options{Logger: logger.With("component", "namesrv")})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", l.Addr)
			if err != nil {
				return fmt.Errorf("namesrv: cannot listen on %s (change it with %s): %w", l.Addr, l.Flag, err)
			}
			logger.Info("namesrv listening", "addr", ln.Addr().String())
			s.setAddr(ln.Addr().String())
			go s.Serve(ln)
			return nil
		},
		OnStop: func(context.Context) error { return s.Close() },
	})
	return s
}
