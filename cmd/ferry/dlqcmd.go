package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/admin"
)

// deadLetterView is a dead letter on a broker.
type deadLetterView struct {
	Broker string `json:"broker"`
	admin.Message
}

// newDLQCmd is ferry dlq: a group's dead letters, with the reason each was
// dead-lettered, and their resending.
func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "List a group's dead letters with the reason, and resend them"}
	var offset int64
	var maxMsgs int
	list := &cobra.Command{
		Use:   "list GROUP",
		Short: "List a group's dead letters on every broker of --api: offset, ids, origin, deliveries and the reason",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			group := args[0]
			out := []deadLetterView{}
			_, err = c.onEach(cmd.Context(), func(base, broker string) error {
				from, n := offset, 0
				for n < maxMsgs {
					var page admin.DeadLetters
					path := fmt.Sprintf("/groups/%s/dead-letters?offset=%d&max=%d", url.PathEscape(group), from, min(maxMsgs-n, 1024))
					if err := c.do(cmd.Context(), base, http.MethodGet, path, nil, &page); err != nil {
						return err
					}
					for _, m := range page.Messages {
						out = append(out, deadLetterView{Broker: broker, Message: m})
					}
					n += len(page.Messages)
					if len(page.Messages) == 0 || page.Next >= page.Max || page.Next <= from {
						break
					}
					from = page.Next
				}
				return nil
			})
			if rerr := render(cmd, out, func(w io.Writer) error { return writeDeadLetters(w, out) }); rerr != nil {
				return rerr
			}
			return err
		},
	}
	list.Flags().Int64Var(&offset, "offset", 0, "first dead-letter queue offset to list")
	list.Flags().IntVar(&maxMsgs, "max", 100, "most dead letters to list from each broker")
	addAPIFlags(list.Flags())
	addOutputFlag(list.Flags())
	cmd.AddCommand(list, newDLQResendCmd())
	return cmd
}

// writeDeadLetters writes the table of ferry dlq list.
func writeDeadLetters(w io.Writer, dls []deadLetterView) error {
	fmt.Fprintln(w, "BROKER\tOFFSET\tID\tORIGINAL ID\tFROM TOPIC\tSUBJECT\tDELIVERIES\tSTORED\tREASON")
	for _, d := range dls {
		orig := d.OriginalID
		if orig == "" {
			orig = d.ProducerID
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Broker, d.QueueOffset, d.ID, orDash(orig),
			orDash(d.Properties["RETRY_TOPIC"]), orDash(d.Subject), d.DeliveryCount,
			d.StoreTime.UTC().Format(time.RFC3339), orDash(oneLine(d.DeadLetterReason)))
	}
	return nil
}

// oneLine keeps a reason on its table line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func newDLQResendCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "resend GROUP [ID…|--all]",
		Short: "Publish a group's dead letters again to the topic and queue they came from, as new messages",
		Long: "Publish a group's dead letters again to the topic and queue they came from, as new messages:\n" +
			"those with the ids given (a dead letter's id, as dlq list shows it, or the id its producer gave),\n" +
			"or --all of them, on every broker of --api. The dead letters stay where they are. Needs the\n" +
			"admin permission or reset on the group. With --all, progress is shown on a terminal.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			group, ids := args[0], args[1:]
			if all == (len(ids) > 0) {
				return errors.New("say which dead letters: their ids, or --all")
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			path := "/groups/" + url.PathEscape(group) + "/dead-letters/resend"
			if !all {
				return resendIDs(cmd, c, path, group, ids)
			}
			_, err = c.onEach(ctx, func(base, broker string) error {
				var first admin.DeadLetters
				if err := c.do(ctx, base, http.MethodGet, "/groups/"+url.PathEscape(group)+"/dead-letters?max=1", nil, &first); err != nil {
					return err
				}
				var done atomic.Int64
				if showsProgress(cmd.ErrOrStderr(), 0) {
					defer startProgress(ctx, cmd.ErrOrStderr(), "resent from "+broker, &done, first.Max-first.Min, time.Second)()
				}
				for from := first.Min; from < first.Max; {
					var rs admin.Resent
					if err := c.do(ctx, base, http.MethodPost, path, admin.ResendRequest{From: &from, Max: 256}, &rs); err != nil {
						return fmt.Errorf("after %d resent: %w", done.Load(), err)
					}
					done.Add(int64(rs.Resent))
					if rs.Resent == 0 || rs.Next <= from {
						break
					}
					from = rs.Next
				}
				fmt.Fprintf(cmd.OutOrStdout(), "resent %d dead letters of %s on %s\n", done.Load(), group, broker)
				return nil
			})
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "resend every dead letter of the group")
	addAPIFlags(cmd.Flags())
	return cmd
}

// resendIDs resends the dead letters with ids: each on the broker of --api
// that has it; an id no broker has is an error naming it.
func resendIDs(cmd *cobra.Command, c *apiClient, path, group string, ids []string) error {
	found := map[string]bool{}
	_, err := c.onEach(cmd.Context(), func(base, broker string) error {
		for _, id := range ids {
			if found[id] {
				continue
			}
			var rs admin.Resent
			err := c.do(cmd.Context(), base, http.MethodPost, path, admin.ResendRequest{IDs: []string{id}}, &rs)
			if errors.Is(err, errAPINotFound) {
				continue
			}
			if err != nil {
				return err
			}
			found[id] = true
			fmt.Fprintf(cmd.OutOrStdout(), "resent %s of %s on %s\n", id, group, broker)
		}
		return nil
	})
	var missing []string
	for _, id := range ids {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		err = errors.Join(err, fmt.Errorf("no dead letter of group %s has the id %s", group, strings.Join(missing, ", ")))
	}
	return err
}
