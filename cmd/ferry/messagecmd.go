package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/remoting"
)

// newMessageCmd is ferry message: lookups by RocketMQ's ids and by key.
func newMessageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "message", Short: "Look messages up by id or key"}
	var topic string
	var maxMsgs int
	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show a message by its offsetMsgId, or by its msgId with --topic",
		Long: "Show a message by its offsetMsgId (the broker's address and the message's commit-log offset,\n" +
			"as ferry produce and RocketMQ's producers print it), or by its msgId (the producer's\n" +
			"UNIQ_KEY), which needs --topic.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, func(a *client.Admin) error {
				id := args[0]
				_, _, perr := remoting.ParseOffsetMsgID(id)
				if topic != "" { // a msgId first: one can look like an offsetMsgId
					found, err := a.QueryMessages(cmd.Context(), topic, id, maxMsgs)
					if err != nil && !errors.Is(err, client.ErrNoMessage) {
						return err
					}
					found = slices.DeleteFunc(found, func(m *client.MessageExt) bool { return m.ID != id }) // not one merely keyed so
					if len(found) > 0 {
						return showMessages(cmd, found)
					}
					if perr != nil {
						return fmt.Errorf("%w: msgId %s in %s", client.ErrNoMessage, id, topic)
					}
				}
				if perr != nil {
					return fmt.Errorf("%q is no offsetMsgId (%v); to look it up as a msgId, give its --topic", id, perr)
				}
				m, err := a.ViewMessage(cmd.Context(), id)
				if err != nil {
					return err
				}
				return showMessages(cmd, []*client.MessageExt{m})
			})
		},
	}
	get.Flags().StringVar(&topic, "topic", "", "the message's topic, to look a msgId up")
	var key string
	find := &cobra.Command{
		Use:   "find --topic T --key K",
		Short: "Show the messages of a topic with a key (or msgId), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(a *client.Admin) error {
				found, err := a.QueryMessages(cmd.Context(), topic, key, maxMsgs)
				if err != nil {
					return err
				}
				return showMessages(cmd, found)
			})
		},
	}
	find.Flags().StringVar(&topic, "topic", "", "topic to search (required)")
	find.Flags().StringVar(&key, "key", "", "key, or msgId, to find (required)")
	find.MarkFlagRequired("topic")
	find.MarkFlagRequired("key")
	for _, c := range []*cobra.Command{get, find} {
		c.Flags().IntVar(&maxMsgs, "max", 32, "most messages to show (at most 256)")
		addClientFlags(c.Flags())
		addOutputFlag(c.Flags())
		cmd.AddCommand(c)
	}
	return cmd
}

// showMessages prints messages: their fields, or with -o json an array of
// them.
func showMessages(cmd *cobra.Command, msgs []*client.MessageExt) error {
	views := make([]messageView, 0, len(msgs))
	for _, m := range msgs {
		views = append(views, messageViewOf(m))
	}
	return render(cmd, views, func(w io.Writer) error { return printMessages(w, msgs) })
}

// printMessages writes each message as "field value" lines, a blank line
// between messages. A body that is not UTF-8 text is shown by its size.
func printMessages(out io.Writer, msgs []*client.MessageExt) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for i, m := range msgs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "msgId\t%s\n", m.ID)
		fmt.Fprintf(w, "offsetMsgId\t%s\n", m.OffsetMsgID)
		fmt.Fprintf(w, "topic\t%s\n", m.Topic)
		fmt.Fprintf(w, "queue\t%d offset %d\n", m.QueueID, m.QueueOffset)
		if m.Broker != "" {
			fmt.Fprintf(w, "broker\t%s (%s)\n", m.Broker, m.StoreHost)
		} else {
			fmt.Fprintf(w, "broker\t%s\n", m.StoreHost)
		}
		if m.Tag != "" {
			fmt.Fprintf(w, "tag\t%s\n", m.Tag)
		}
		if len(m.Keys) > 0 {
			fmt.Fprintf(w, "keys\t%s\n", strings.Join(m.Keys, " "))
		}
		fmt.Fprintf(w, "born\t%s\n", m.BornTime.UTC().Format(time.RFC3339Nano))
		fmt.Fprintf(w, "stored\t%s\n", m.StoreTime.UTC().Format(time.RFC3339Nano))
		fmt.Fprintf(w, "reconsumes\t%d\n", m.ReconsumeTimes)
		for _, k := range slices.Sorted(maps.Keys(m.Properties)) {
			fmt.Fprintf(w, "property\t%s=%s\n", k, m.Properties[k])
		}
		if utf8.Valid(m.Body) {
			fmt.Fprintf(w, "body\t%q\n", m.Body)
		} else {
			fmt.Fprintf(w, "body\t%d bytes\n", len(m.Body))
		}
	}
	return w.Flush()
}
