package native

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/namesrv"
)

// Listen is where the front-end listens, the flag that sets it, and the
// NameServers it registers with besides the application's own.
type Listen struct {
	Addr        string
	Flag        string
	NameServers []string
	Advertise   string // see Options.Advertise
}

type params struct {
	fx.In
	Lifecycle fx.Lifecycle
	Broker    *core.Broker
	Listen    Listen
	Logger    *slog.Logger
	NameSrv   *namesrv.Server      `optional:"true"` // ferry serve's in-process NameServer
	Registry  *prometheus.Registry `optional:"true"`
	Auth      *auth.Authenticator  `optional:"true"` // the rules every front-end applies
}

// Module serves the native protocol in the application. It binds in
// OnStart, after the in-process NameServer (if any), whose address it
// registers with; a taken port stops the start with an error naming the flag.
// Its metrics go into the application's *prometheus.Registry when there is one.
var Module = fx.Module("native", fx.Provide(newFromFx), fx.Invoke(func(*Server) {}))

func newFromFx(p params) (*Server, error) {
	opts := Options{NameServers: p.Listen.NameServers, Advertise: p.Listen.Advertise, Logger: p.Logger.With("component", "native")}
	if p.Auth != nil && !p.Auth.Open() {
		opts.Auth = p.Auth
	}
	s := New(p.Broker, opts)
	if p.Registry != nil {
		if err := p.Registry.Register(s); err != nil {
			return nil, err
		}
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", p.Listen.Addr)
			if err != nil {
				return fmt.Errorf("native: cannot listen on %s (change it with %s): %w", p.Listen.Addr, p.Listen.Flag, err)
			}
			if p.NameSrv != nil { // listening by now: its OnStart ran first
				s.opts.NameServers = append(s.opts.NameServers, reachable(p.NameSrv.Addr()))
			}
			p.Logger.Info("native protocol listening", "addr", ln.Addr().String(), "namesrv", s.opts.NameServers)
			go s.Serve(ln)
			return nil
		},
		OnStop: func(context.Context) error { return s.Close() },
	})
	return s, nil
}

// reachable turns a listen address with no host (":9876") into one to dial.
func reachable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
