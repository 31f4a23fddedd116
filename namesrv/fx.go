package namesrv

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/remoting"
)

// Listen is where the application's NameServer listens, and the flag that
// sets it (for the error when the port is taken).
type Listen struct {
	Addr string
	Flag string
	// Limits bound what clients can take (Options.Limits).
	Limits remoting.Limits
}

// Module runs a NameServer in the application: it binds in OnStart (a port
// that is taken stops the start with an error naming the flag) and closes
// in OnStop. Its metrics go into the application's *prometheus.Registry
// when there is one; Server.AcceptErr is the listener's readiness check.
var Module = fx.Module("namesrv", fx.Provide(newFromFx), fx.Invoke(func(*Server) {}))

type params struct {
	fx.In
	Lifecycle fx.Lifecycle
	Listen    Listen
	Logger    *slog.Logger
	Registry  *prometheus.Registry `optional:"true"`
	// ClusterKey is the cluster's key (Options.ClusterKey); without one,
	// only loopback brokers may register.
	ClusterKey *clusterauth.Key `optional:"true"`
}

func newFromFx(p params) (*Server, error) {
	s := New(Options{Limits: p.Listen.Limits, Logger: p.Logger.With("component", "namesrv"), ClusterKey: p.ClusterKey})
	if p.Registry != nil {
		if err := p.Registry.Register(s); err != nil {
			return nil, err
		}
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", p.Listen.Addr)
			if err != nil {
				return fmt.Errorf("namesrv: cannot listen on %s (change it with %s): %w", p.Listen.Addr, p.Listen.Flag, err)
			}
			p.Logger.Info("namesrv listening", "addr", ln.Addr().String(), "cluster_secret", p.ClusterKey != nil)
			if p.ClusterKey == nil {
				p.Logger.Warn("namesrv: no cluster secret: brokers may register only from loopback (this host); " +
					"set cluster-secret-file or FERRY_CLUSTER_SECRET, the same on the NameServer and every broker, to register brokers from other hosts")
			}
			s.setAddr(ln.Addr().String())
			go s.Serve(ln)
			return nil
		},
		OnStop: func(context.Context) error { return s.Close() },
	})
	return s, nil
}
