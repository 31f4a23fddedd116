package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/admin"
)

// mqttClientView is an MQTT client on a broker.
type mqttClientView struct {
	Broker string `json:"broker"`
	admin.ClientView
}

// newMQTTCmd is ferry mqtt: the MQTT clients connected to the brokers of
// --api, and their disconnection.
func newMQTTCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "mqtt", Short: "List the MQTT clients connected, and disconnect one"}
	clients := &cobra.Command{
		Use:   "clients",
		Short: "List the MQTT clients connected to every broker of --api: id, user, address, since, subscriptions, version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			out := []mqttClientView{}
			_, err = c.onEach(cmd.Context(), func(base, broker string) error {
				var cs []admin.ClientView
				if err := c.do(cmd.Context(), base, http.MethodGet, "/clients?protocol=mqtt", nil, &cs); err != nil {
					return err
				}
				for _, cl := range cs {
					out = append(out, mqttClientView{Broker: broker, ClientView: cl})
				}
				return nil
			})
			now := time.Now()
			if rerr := render(cmd, out, func(w io.Writer) error {
				fmt.Fprintln(w, "BROKER\tCLIENT\tUSER\tREMOTE\tLISTENER\tCONNECTED\tSUBSCRIPTIONS\tVERSION")
				for _, cl := range out {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s ago\t%d\t%s\n", cl.Broker, cl.ID, orDash(cl.User), cl.RemoteAddr,
						orDash(cl.Listener), now.Sub(cl.ConnectedAt).Round(time.Second), cl.Subscriptions, mqttVersion(cl.ProtocolVersion))
				}
				return nil
			}); rerr != nil {
				return rerr
			}
			return err
		},
	}
	kick := onEachFoundCmd(&cobra.Command{
		Use:   "kick CLIENT-ID",
		Short: "Disconnect an MQTT client on the broker of --api it is connected to; it may connect again",
		Long: "Disconnect an MQTT client on the broker of --api it is connected to: an MQTT 5 client is sent\n" +
			"DISCONNECT (administrative action) first. Its session stays as on any disconnection, and it\n" +
			"may connect again (refuse it in the ACL to keep it out). Needs the admin permission.",
	}, "MQTT client", func(ctx context.Context, c *apiClient, out io.Writer, base, broker, id string) error {
		if err := c.do(ctx, base, http.MethodDelete, "/clients/mqtt/"+url.PathEscape(id), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "disconnected MQTT client %s on %s\n", id, broker)
		return nil
	})
	addAPIFlags(clients.Flags())
	addOutputFlag(clients.Flags())
	cmd.AddCommand(clients, kick)
	return cmd
}

// mqttVersion names an MQTT protocol level.
func mqttVersion(v int) string {
	switch v {
	case 3:
		return "3.1"
	case 4:
		return "3.1.1"
	case 5:
		return "5"
	}
	return fmt.Sprint(v)
}
