package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/config"
)

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "List the brokers registered with the NameServers, and the replicated groups"}
	list := &cobra.Command{
		Use: "list",
		Short: "List the brokers every NameServer of --namesrv knows: cluster, name, id and role, address, last registration; " +
			"with --controllers, the replicated groups too: epoch, master, in-sync set, each broker's role, log end, lag and liveness",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f, err := outputFormat(cmd); err != nil || f == "json" {
				return errors.Join(err, clusterJSON(cmd))
			}
			err := withAdmin(cmd, func(a *client.Admin) error {
				brokers, err := a.ClusterBrokers(cmd.Context())
				if werr := writeBrokers(cmd.OutOrStdout(), brokers, nameServersOf(cmd), time.Now()); werr != nil {
					return werr
				}
				return err
			})
			return errors.Join(err, listGroups(cmd, cmd.OutOrStdout()))
		},
	}
	addClientFlags(list.Flags())
	addOutputFlag(list.Flags())
	config.AddFlag(list.Flags(), "controllers", "controller.addrs", "the controllers' addresses, comma separated: list the replicated groups they keep too")
	addClusterFlags(list.Flags())
	cmd.AddCommand(list)
	return cmd
}

// nameServersOf is the number of NameServers the command asks, for the
// NAMESRV column ("1/2": one of two lists the broker).
func nameServersOf(cmd *cobra.Command) int {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return 0
	}
	return len(nameServers(cfg))
}

// writeBrokers writes the table of ferry cluster list.
func writeBrokers(out io.Writer, brokers []client.BrokerInfo, asked int, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CLUSTER\tBROKER\tID\tROLE\tADDRESS\tLAST REGISTERED\tNAMESRV")
	for _, b := range brokers {
		addr := b.Addr
		if addr == "" {
			addr = "- (no native listener)"
		}
		seen := "-"
		if !b.LastSeen.IsZero() {
			seen = now.Sub(b.LastSeen).Round(time.Second).String() + " ago"
		}
		known := fmt.Sprintf("%d/%d", len(b.NameServers), asked)
		if len(b.NameServers) < asked { // some do not list it: say which do
			known += " " + strings.Join(b.NameServers, ",")
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", b.Cluster, b.Name, b.ID, b.Role(), addr, seen, known)
	}
	return w.Flush()
}
