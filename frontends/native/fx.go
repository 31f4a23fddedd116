package native

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/plugin"
	"github.com/ferrymq/ferry/frontends/native/nativeconf"
	"github.com/ferrymq/ferry/remoting"
)

// Listen is where the front-end listens, the flag that sets it, and the
// address it advertises.
type Listen struct {
	Addr      string
	Flag      string
	Advertise string // see Options.Advertise
	// TLSCert and TLSKey (PEM files), when set, make the listener serve
	// TLS only.
	TLSCert, TLSKey string
	// Limits bound what clients can take (Options.Limits).
	Limits remoting.Limits
}

// Plugin is the front-end as the configuration's native section has it
// (package nativeconf: native.addr, native.tls-cert, native.tls-key,
// native.advertise-addr and the limits, LimitsFrom): Module with its
// Listen, and the cluster.Endpoint the broker's registrar registers, which
// it provides after the plug-ins are ordered, so that the registrar starts
// once the listener is bound. Nothing when native.addr is off.
func Plugin(cfg config.Config) fx.Option {
	n := cfg.Native
	if n.Addr == "off" {
		return fx.Options()
	}
	return fx.Options(
		fx.Supply(Listen{Addr: n.Addr, Flag: "--native-addr", TLSCert: n.TLSCert, TLSKey: n.TLSKey,
			Advertise: n.AdvertiseAddr, Limits: LimitsFrom(n)}),
		Module,
		fx.Provide(func(s *Server, _ *plugin.Runner) cluster.Endpoint { return s }),
	)
}

// The registrar holds a send that creates a topic until the NameServers
// route it: the Server must stay a RouteSyncer.
var _ cluster.RouteSyncer = (*Server)(nil)

// LimitsFrom maps the native section onto the limits of the native
// listener (docs/native.md, "Limits").
func LimitsFrom(n nativeconf.Config) remoting.Limits {
	return remoting.Limits{
		MaxConns:            n.MaxConnections,
		MaxFrame:            n.MaxFrame,
		MaxInFlight:         n.MaxInFlight,
		FirstRequestTimeout: n.FirstRequestTimeout,
		IdleTimeout:         n.IdleTimeout,
		MaxQueuedBytes:      n.MaxQueuedBytes,
		MaxReadingBytes:     n.MaxReadingBytes,
	}
}

type params struct {
	fx.In
	Broker   *core.Broker
	Listen   Listen
	Logger   *slog.Logger
	Registry *prometheus.Registry `optional:"true"`
	Auth     *auth.Authenticator  `optional:"true"` // the rules every front-end applies
}

// Module serves the native protocol in the application: a plug-in
// (package core/plugin) named "native" that binds in its Start; a taken
// port stops the start with an error naming the flag. The broker's
// registrar (package cluster) registers its address. Its metrics go into
// the application's *prometheus.Registry when there is one;
// Server.AcceptErr is the listener's readiness check.
var Module = fx.Module("native",
	fx.Provide(newFromFx),
	fx.Invoke(func(*Server) {}),
)

// result is the server and the plug-in that runs it.
type result struct {
	fx.Out
	Server *Server
	Plugin plugin.Plugin `group:"plugins"`
}

func newFromFx(p params) (result, error) {
	opts := Options{Advertise: p.Listen.Advertise, Limits: p.Listen.Limits, Logger: p.Logger.With("component", "native")}
	if p.Auth != nil && !p.Auth.Open() {
		opts.Auth = p.Auth
	}
	s := New(p.Broker, opts)
	if p.Registry != nil {
		if err := p.Registry.Register(s); err != nil {
			return result{}, err
		}
	}
	start := func(context.Context) error {
		var tlsCfg *tls.Config
		if p.Listen.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(p.Listen.TLSCert, p.Listen.TLSKey)
			if err != nil {
				return fmt.Errorf("native: TLS certificate (native.tls-cert, native.tls-key): %w", err)
			}
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		ln, err := net.Listen("tcp", p.Listen.Addr)
		if err != nil {
			return fmt.Errorf("native: cannot listen on %s (change it with %s): %w", p.Listen.Addr, p.Listen.Flag, err)
		}
		if tlsCfg != nil {
			ln = tls.NewListener(ln, tlsCfg)
		}
		p.Logger.Info("native protocol listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil)
		go s.Serve(ln)
		return nil
	}
	stop := func(context.Context) error { return s.Close() }
	return result{Server: s, Plugin: plugin.Funcs("native", start, stop, s.AcceptErr)}, nil
}
