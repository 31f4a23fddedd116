package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/controller"
)

// groupsTimeout bounds ferry cluster list's question to the controllers:
// the client tries each in turn and follows the leader, and an election
// takes about a second, so a few seconds without an answer means none of
// them can give one.
const groupsTimeout = 5 * time.Second

// listGroups asks the controllers of controller.addrs (--controllers) for
// every replicated group and writes their table; no controllers
// configured, it writes nothing.
func listGroups(cmd *cobra.Command, out io.Writer) error {
	groups, asked, err := replicatedGroups(cmd)
	if err != nil || !asked {
		return err
	}
	fmt.Fprintln(out)
	return writeGroups(out, groups, time.Now())
}

// replicatedGroups asks the controllers of controller.addrs
// (--controllers) for every replicated group; asked is false when no
// controllers are configured.
func replicatedGroups(cmd *cobra.Command) (groups []controller.GroupState, asked bool, err error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, false, err
	}
	addrs := splitAddrs(cfg.Controller.Addrs)
	if len(addrs) == 0 {
		return nil, false, nil
	}
	secret, _, err := clusterSecret(cfg)
	if err != nil {
		return nil, true, err
	}
	ctl := controller.NewClient(addrs, secret, newLogger(cfg.Log, cmd.ErrOrStderr()))
	defer ctl.Close()
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, groupsTimeout)
	defer cancel()
	groups, err = ctl.Groups(ctx)
	if err != nil {
		return nil, true, fmt.Errorf("replicated groups: controllers %s: %w", strings.Join(addrs, ","), err)
	}
	return groups, true, nil
}

// writeGroups writes the replicated groups as the controllers' leader sees
// them: a line per group (cluster, epoch, master, in-sync set), then a
// line per broker of every group (role, in the in-sync set or not, log
// end and lag behind the master as their latest heartbeats said, alive or
// not, addresses).
func writeGroups(out io.Writer, groups []controller.GroupState, now time.Time) error {
	if len(groups) == 0 {
		_, err := fmt.Fprintln(out, "no replicated groups")
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "GROUP\tCLUSTER\tEPOCH\tMASTER\tMASTER ADDRESS\tIN-SYNC")
	for _, g := range groups {
		master, addr := "none", "-"
		if g.MasterID >= 0 {
			master = strconv.FormatInt(g.MasterID, 10)
			addr = orDash(g.MasterNativeAddr)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", g.Group, g.Cluster, g.Epoch, master, addr, joinIDs(g.InSync))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "GROUP\tID\tROLE\tIN-SYNC\tLOG END\tLAG\tALIVE\tLAST HEARTBEAT\tADDRESS\tREPLICATION")
	for _, g := range groups {
		masterEnd, masterKnown := int64(0), false
		for _, b := range g.Brokers {
			if b.ID == g.MasterID && !b.LastSeen.IsZero() {
				masterEnd, masterKnown = b.LogEnd, true
			}
		}
		for _, b := range g.Brokers {
			role := "replica"
			if b.ID == g.MasterID {
				role = "master"
			}
			end, lag, seen := "-", "-", "-"
			if !b.LastSeen.IsZero() { // a heartbeat since this leader took over
				end = strconv.FormatInt(b.LogEnd, 10)
				seen = now.Sub(b.LastSeen).Round(100*time.Millisecond).String() + " ago"
				if masterKnown {
					// The two heartbeats are up to a second apart: a replica
					// may report more than the master's older one did.
					lag = strconv.FormatInt(max(masterEnd-b.LogEnd, 0), 10)
				}
			}
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Group, b.ID, role, yesNo(slices.Contains(g.InSync, b.ID)),
				end, lag, yesNo(b.Alive), seen, orDash(b.NativeAddr), orDash(b.ReplicationAddr))
		}
	}
	return w.Flush()
}

func joinIDs(ids []int64) string {
	if len(ids) == 0 {
		return "-"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ",")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
