package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/client"
)

// withAdmin runs f with an Admin on the configured NameServers.
func withAdmin(cmd *cobra.Command, f func(*client.Admin) error) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	opts, err := clientOptions(cmd, cfg)
	if err != nil {
		return err
	}
	a, err := client.NewAdmin(opts...)
	if err != nil {
		return err
	}
	defer a.Close()
	return f(a)
}

func newTopicCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topic", Short: "Create, list and describe topics"}
	var queues int
	var brokers []string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a topic on every broker, or on those --brokers names", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkQueuesFlag(cmd, queues); err != nil {
				return err
			}
			return withAdmin(cmd, func(a *client.Admin) error {
				return createTopic(cmd, a, args[0], queues, brokers)
			})
		},
	}
	create.Flags().IntVar(&queues, "queues", 0, "number of queues, 1..1024; a topic's queues can be added, not removed (default: the brokers' core.default-queues, or the count the topic has)")
	create.Flags().StringSliceVar(&brokers, "brokers", nil, "brokers to create it on, by name, comma separated (default: every broker)")
	list := &cobra.Command{
		Use: "list", Short: "List the topics the NameServers route", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(a *client.Admin) error {
				topics, err := a.Topics(cmd.Context())
				for _, t := range topics {
					fmt.Fprintln(cmd.OutOrStdout(), t)
				}
				return err
			})
		},
	}
	describe := &cobra.Command{
		Use: "describe NAME", Short: "Queues of a topic with their min and max offsets", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, func(a *client.Admin) error {
				stats, err := a.DescribeTopic(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "BROKER\tQUEUE\tMIN\tMAX\tMESSAGES")
				for _, ts := range stats {
					for _, q := range ts.Stats {
						fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", ts.Broker, q.ID, q.Min, q.Max, q.Max-q.Min)
					}
					fmt.Fprintf(w, "%s\ttotal rate\t%.0f msg/s\t\t\n", ts.Broker, ts.Rate)
				}
				return w.Flush()
			})
		},
	}
	for _, c := range []*cobra.Command{create, list, describe} {
		addClientFlags(c.Flags())
		cmd.AddCommand(c)
	}
	return cmd
}

func newGroupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "List and describe consumer groups"}
	list := &cobra.Command{
		Use: "list", Short: "List the consumer groups the brokers know", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(a *client.Admin) error {
				groups, err := a.Groups(cmd.Context())
				for _, g := range groups {
					fmt.Fprintln(cmd.OutOrStdout(), g)
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
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				for _, gs := range stats {
					fmt.Fprintf(w, "broker %s: %d members\n", gs.Broker, len(gs.Members))
					for _, m := range gs.Members {
						fmt.Fprintf(w, "  member\t%s\t%v\n", m.ID, m.Queues)
					}
				}
				fmt.Fprintln(w, "BROKER\tTOPIC\tQUEUE\tCOMMITTED\tMAX\tLAG\tIN-FLIGHT")
				var lag int64
				for _, gs := range stats {
					for _, q := range gs.Queues {
						fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\n", gs.Broker, q.Topic, q.Queue, q.Committed, q.Max, q.Lag, q.InFlight)
						lag += q.Lag
					}
				}
				fmt.Fprintf(w, "total lag\t%d\n", lag)
				return w.Flush()
			})
		},
	}
	for _, c := range []*cobra.Command{list, describe} {
		addClientFlags(c.Flags())
		cmd.AddCommand(c)
	}
	return cmd
}
