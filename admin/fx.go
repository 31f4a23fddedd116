package admin

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/auth"
	"github.com/ferrymq/ferry/cluster"
	"github.com/ferrymq/ferry/config"
	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/plugin"
	"github.com/ferrymq/ferry/monitor"
)

// Module serves the admin API on the HTTP port (the monitor's), under
// Prefix, over the application's core and authenticator; version is the
// build's, for the overview. In a replicated broker it runs in the serving
// part, so that the API is served while the broker is master.
func Module(version string) fx.Option {
	return fx.Module("admin",
		fx.Supply(fx.Private, buildVersion(version)),
		fx.Provide(fx.Private, newFromFx),
		fx.Provide(fx.Annotate(route, fx.ResultTags(`group:"routes"`))),
	)
}

// buildVersion is the build's version as the fx graph carries it.
type buildVersion string

type params struct {
	fx.In
	Broker   *core.Broker
	Auth     *auth.Authenticator
	Config   config.Config
	Logger   *slog.Logger
	Version  buildVersion
	Identity cluster.Identity     `optional:"true"`
	Registry *prometheus.Registry `optional:"true"`
	Plugins  *plugin.Runner       `optional:"true"`
}

func newFromFx(p params) (*Server, error) {
	id := Identity{Cluster: p.Identity.Cluster, Name: p.Identity.Name, ID: p.Identity.ID, Role: "standalone", Version: string(p.Version)}
	switch {
	case p.Config.Controller.Addrs != "":
		id.Role = "master" // a replicated broker serves the API only as master
	case p.Identity.Name != "" && p.Identity.ID != 0:
		id.Role = p.Identity.Role()
	}
	if id.Name == "" {
		id.Cluster, id.Name, id.ID = p.Config.Broker.Cluster, p.Config.Broker.Name, p.Config.Broker.ID
	}
	o := Options{Broker: p.Broker, Auth: p.Auth, Identity: id, Logger: p.Logger.With("component", "admin")}
	if p.Registry != nil {
		o.Metrics = p.Registry
	}
	if p.Plugins != nil {
		o.Plugins = p.Plugins.Plugins()
	}
	return New(o)
}

func route(s *Server) monitor.Route { return monitor.Route{Pattern: Prefix, Handler: s} }
