package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/admin"
	"github.com/ferrymq/ferry/client"
)

func newGroupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "List, describe, delete consumer groups and reset their offsets"}
	list := &cobra.Command{
		Use: "list", Short: "List the consumer groups the brokers know", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(a *client.Admin) error {
				groups, err := a.Groups(cmd.Context())
				if groups == nil {
					groups = []string{}
				}
				if rerr := render(cmd, groups, func(w io.Writer) error {
					for _, g := range groups {
						fmt.Fprintln(w, g)
					}
					return nil
				}); rerr != nil {
					return rerr
				}
				return err
			})
		},
	}
	describe := &cobra.Command{
		Use: "describe GROUP", Short: "Members of a group, and per queue its committed offset and lag", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, func(a *client.Admin) error {
				stats, err := a.DescribeGroup(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				v := groupViewOf(args[0], stats)
				return render(cmd, v, func(w io.Writer) error { return writeGroup(w, v, stats) })
			})
		},
	}
	for _, c := range []*cobra.Command{list, describe} {
		addClientFlags(c.Flags())
		addOutputFlag(c.Flags())
		cmd.AddCommand(c)
	}
	cmd.AddCommand(newGroupDeleteCmd(), newGroupResetCmd())
	return cmd
}

// writeGroup writes the table of ferry group describe.
func writeGroup(w io.Writer, v groupView, stats []client.GroupStats) error {
	for _, gs := range stats {
		fmt.Fprintf(w, "broker %s: %d members\n", gs.Broker, len(gs.Members))
		for _, m := range gs.Members {
			fmt.Fprintf(w, "  member\t%s\t%v\n", m.ID, m.Queues)
		}
	}
	fmt.Fprintln(w, "BROKER\tTOPIC\tQUEUE\tCOMMITTED\tMAX\tLAG\tIN-FLIGHT")
	for _, q := range v.Queues {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n", q.Broker, q.Topic, q.Queue, q.Committed, q.Max, q.Lag, q.InFlight)
	}
	fmt.Fprintf(w, "total lag\t%d\n", v.Lag)
	return nil
}

func newGroupDeleteCmd() *cobra.Command {
	return onEachFoundCmd(&cobra.Command{
		Use:   "delete GROUP",
		Short: "Delete a consumer group on every broker of --api that knows it: members dropped, offsets forgotten",
		Long: "Delete a consumer group on every broker of --api that knows it: its members are dropped and its\n" +
			"offsets forgotten; its retry and dead-letter topics stay. Needs the admin permission.",
	}, "group", func(ctx context.Context, c *apiClient, out io.Writer, base, broker, group string) error {
		if err := c.do(ctx, base, http.MethodDelete, "/groups/"+url.PathEscape(group), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted group %s on %s\n", group, broker)
		return nil
	})
}

// resetTarget parses --to: first, last, an offset (of --topic and
// --queue), an RFC 3339 time, or a duration ago.
func resetTarget(to, topic string, queue int, now time.Time) (admin.ResetRequest, error) {
	switch to {
	case "first", "last":
		return admin.ResetRequest{To: to}, nil
	}
	if off, err := strconv.ParseInt(to, 10, 64); err == nil {
		if topic == "" || queue < 0 {
			return admin.ResetRequest{}, fmt.Errorf("--to %s: an offset is of one queue: give --topic and --queue", to)
		}
		return admin.ResetRequest{To: "offset", Topic: topic, Queue: queue, Offset: off}, nil
	}
	if t, err := time.Parse(time.RFC3339, to); err == nil {
		return admin.ResetRequest{To: "time", Time: t.UTC().Format(time.RFC3339)}, nil
	}
	if d, err := time.ParseDuration(to); err == nil && d > 0 {
		return admin.ResetRequest{To: "time", Time: now.Add(-d).UTC().Format(time.RFC3339)}, nil
	}
	return admin.ResetRequest{}, fmt.Errorf("--to %q: want first, last, an offset (with --topic and --queue), a time (2025-01-02T15:04:05Z) or a duration ago (15m)", to)
}

func newGroupResetCmd() *cobra.Command {
	var to, topic string
	var queue int
	cmd := &cobra.Command{
		Use:   "reset-offset GROUP --to first|last|TIME|OFFSET",
		Short: "Move a group's offsets: to the first or last message, to a time, or one queue to an offset",
		Long: "Move a group's offsets on every broker of --api that knows it: --to first or last (every queue\n" +
			"the group reads), a time (RFC 3339, or a duration ago such as 15m: the first message stored\n" +
			"since), or an offset of one queue (--topic and --queue). A native consumer keeps its own\n" +
			"position and overwrites the reset with its next commit: reset while its consumers are stopped.\n" +
			"Needs the admin permission or reset on the group.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := resetTarget(to, topic, queue, time.Now())
			if err != nil {
				return err
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			group := args[0]
			var views []groupView
			err = c.onEachFound(cmd.Context(), "group "+group, func(base, broker string) error {
				var g admin.Group
				if err := c.do(cmd.Context(), base, http.MethodPost, "/groups/"+url.PathEscape(group)+"/reset", req, &g); err != nil {
					return err
				}
				views = append(views, groupViewFromAPI(broker, g))
				return nil
			})
			if err != nil {
				return err
			}
			return render(cmd, views, func(w io.Writer) error {
				fmt.Fprintln(w, "BROKER\tTOPIC\tQUEUE\tCOMMITTED\tMAX\tLAG")
				for _, v := range views {
					for _, q := range v.Queues {
						fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\n", q.Broker, q.Topic, q.Queue, q.Committed, q.Max, q.Lag)
					}
				}
				return nil
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&to, "to", "", "first, last, a time (RFC 3339 or a duration ago) or an offset (required)")
	fs.StringVar(&topic, "topic", "", "the topic of the queue an offset is of")
	fs.IntVar(&queue, "queue", -1, "the queue an offset is of")
	cmd.MarkFlagRequired("to")
	addAPIFlags(fs)
	addOutputFlag(fs)
	return cmd
}

// groupViewFromAPI is a group as the admin API of broker answered it.
func groupViewFromAPI(broker string, g admin.Group) groupView {
	v := groupView{Name: g.Name, Members: []memberView{}, Queues: []groupQueueView{}, Lag: g.Lag}
	for _, m := range g.MemberList {
		v.Members = append(v.Members, memberView{Broker: broker, Member: m})
	}
	for _, q := range g.Queues {
		v.Queues = append(v.Queues, groupQueueView{Broker: broker, GroupQueue: q})
	}
	return v
}
