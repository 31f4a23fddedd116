package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/bridge/rabbitmq"
)

func newBridgeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bridge", Short: "RabbitMQ bridges of a running ferry serve"}
	var addr string
	status := &cobra.Command{
		Use: "status", Short: "Each bridge's state, forwarded count, lag and last error", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				// The running serve's address as its configuration says
				// (--config, FERRY_HTTP_ADDR), as the admin commands do.
				cfg, err := loadConfig(cmd)
				if err != nil {
					return err
				}
				if cfg.HTTPAddr == "" || cfg.HTTPAddr == "off" {
					return errors.New("--http: no address to ask (http-addr is off): give --http host:port")
				}
				addr = cfg.HTTPAddr
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			list, err := fetchBridges(ctx, addr)
			if err != nil {
				return err
			}
			printBridges(cmd.OutOrStdout(), list)
			return nil
		},
	}
	status.Flags().StringVar(&addr, "http", "", "ferry serve's HTTP address (default: this config's http-addr on localhost)")
	cmd.AddCommand(status)
	return cmd
}

// fetchBridges reads the status from ferry serve's HTTP endpoint.
func fetchBridges(ctx context.Context, addr string) ([]rabbitmq.Status, error) {
	base := addr
	if !strings.Contains(base, "://") {
		if host, port, err := net.SplitHostPort(base); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
			base = net.JoinHostPort("127.0.0.1", port)
		}
		base = "http://" + base
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+rabbitmq.StatusPath, nil)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach ferry serve's HTTP endpoint (set it with --http): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil // no bridges configured
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	var list []rabbitmq.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("%s: %w", req.URL, err)
	}
	return list, nil
}

func printBridges(w io.Writer, list []rabbitmq.Status) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no bridges configured")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIRECTION\tTOPIC\tSTATE\tSINCE\tFORWARDED\tLAG\tDUPLICATES?\tDEAD-LETTERED\tRECONNECTS\tLAST ERROR")
	for _, s := range list {
		lag := "-"
		if s.Lag >= 0 {
			lag = fmt.Sprint(s.Lag)
		}
		lastErr := "-"
		if s.LastError != "" {
			lastErr = s.LastError + " (" + s.LastErrorAt.Format(time.TimeOnly) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\n", s.Name, s.Direction, s.Topic, s.State,
			time.Since(s.Since).Round(time.Second), s.Forwarded, lag, s.DuplicatesPossible, s.DeadLettered, s.Reconnects, lastErr)
	}
	tw.Flush()
}
