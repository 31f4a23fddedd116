package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/admin"
	"github.com/ferrymq/ferry/client"
)

// writeNames prints a list of names: one a line, or a JSON array.
func writeNames(cmd *cobra.Command, names []string) error {
	if names == nil {
		names = []string{}
	}
	return render(cmd, names, func(w io.Writer) error {
		for _, n := range names {
			fmt.Fprintln(w, n)
		}
		return nil
	})
}

// writeTopic writes the table of ferry topic describe.
func writeTopic(w io.Writer, stats []client.TopicStats) error {
	fmt.Fprintln(w, "BROKER\tQUEUE\tMIN\tMAX\tMESSAGES")
	for _, ts := range stats {
		for _, q := range ts.Stats {
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", ts.Broker, q.ID, q.Min, q.Max, q.Max-q.Min)
		}
		fmt.Fprintf(w, "%s\ttotal rate\t%.0f msg/s\t\t\n", ts.Broker, ts.Rate)
	}
	return nil
}

func newTopicDeleteCmd() *cobra.Command {
	return onEachFoundCmd(&cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic on every broker of --api that has it",
		Long: "Delete a topic on every broker of --api that has it: it is no longer routed nor written to; its\n" +
			"messages stay in the log until retention removes them. Needs the admin permission.",
	}, "topic", func(ctx context.Context, c *apiClient, out io.Writer, base, broker, topic string) error {
		if err := c.do(ctx, base, http.MethodDelete, "/topics/"+url.PathEscape(topic), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted topic %s on %s\n", topic, broker)
		return nil
	})
}

func newTopicPurgeCmd() *cobra.Command {
	return onEachFoundCmd(&cobra.Command{
		Use:   "purge NAME",
		Short: "Skip a topic's backlog: every group that reads it moves to the end of its queues",
		Long: "Skip a topic's backlog on every broker of --api that has it: every group that reads the topic\n" +
			"moves to the end of its queues, so that no one is delivered the messages stored so far. They\n" +
			"stay in the log (readable by offset and id) until retention removes them: the log is shared by\n" +
			"every topic. A native consumer overwrites the move with its next commit: purge while such\n" +
			"consumers are stopped. Needs the admin permission.",
	}, "topic", func(ctx context.Context, c *apiClient, out io.Writer, base, broker, topic string) error {
		var p admin.Purged
		if err := c.do(ctx, base, http.MethodPost, "/topics/"+url.PathEscape(topic)+"/purge", nil, &p); err != nil {
			return err
		}
		groups := "no group reads it"
		if len(p.Groups) > 0 {
			groups = "groups moved to its end: " + strings.Join(p.Groups, ", ")
		}
		fmt.Fprintf(out, "purged topic %s on %s (%s)\n", topic, broker, groups)
		return nil
	})
}
