package main

import (
	"errors"
	"io"

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
				return errors.Join(writeNames(cmd, topics), err)
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
				return render(cmd, topicViewOf(args[0], stats), func(w io.Writer) error { return writeTopic(w, stats) })
			})
		},
	}
	for _, c := range []*cobra.Command{create, list, describe} {
		addClientFlags(c.Flags())
		cmd.AddCommand(c)
	}
	addOutputFlag(list.Flags())
	addOutputFlag(describe.Flags())
	cmd.AddCommand(newTopicDeleteCmd(), newTopicPurgeCmd())
	return cmd
}
