package console

import (
	"go.uber.org/fx"

	"github.com/ferrymq/ferry/monitor"
)

// Module serves the console's page at "/" and its assets under
// AssetPrefix on the HTTP port, as routes of the monitor. It goes with
// the admin API's module (package admin), which the page calls.
var Module = fx.Module("console",
	fx.Provide(
		fx.Annotate(func() monitor.Route { return monitor.Route{Pattern: IndexPattern, Handler: Index()} }, fx.ResultTags(`group:"routes"`)),
		fx.Annotate(func() monitor.Route { return monitor.Route{Pattern: "GET " + AssetPrefix, Handler: Assets()} }, fx.ResultTags(`group:"routes"`)),
	),
)
