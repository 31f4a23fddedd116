package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferrymq/ferry/admin"
	"github.com/ferrymq/ferry/config"
)

// The commands that change a broker's groups, topics, dead letters and
// clients call its admin HTTP API (package admin, docs/admin-api.md): the
// API the console calls, with the same permissions and the same core
// operations. A broker's HTTP address is not registered with the
// NameServers, so --api names each broker to ask.

// apiClient calls the admin API of the brokers of --api.
type apiClient struct {
	bases          []string // "http://host:port", one a broker
	user, password string
	hc             *http.Client
}

// errAPINotFound is an API's 404: no such topic, group, message or client
// on that broker.
var errAPINotFound = errors.New("not found")

// addAPIFlags adds the flags of the commands that call the admin API.
func addAPIFlags(fs *pflag.FlagSet) {
	fs.String("api", "", "admin API of each broker to ask, comma separated: http://host:port of its http-addr (default: this config's http-addr on localhost)")
	config.AddFlag(fs, "http-addr", "http-addr", "the broker's HTTP address, whose admin API to call when --api is not given")
	config.AddFlag(fs, "username", "username", "user of the brokers' password file (auth.password-file)")
	config.AddFlag(fs, "password", "password", "its password; prefer the environment variable, which ps does not show")
}

// newAPIClient is the command's client of --api, or of the http-addr of
// its configuration.
func newAPIClient(cmd *cobra.Command) (*apiClient, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	c := &apiClient{user: cfg.Username, password: cfg.Password, hc: &http.Client{Timeout: time.Minute}}
	list, _ := cmd.Flags().GetString("api")
	for _, b := range strings.Split(list, ",") {
		if b = strings.TrimSpace(b); b == "" {
			continue
		}
		if !strings.Contains(b, "://") {
			b = "http://" + b
		}
		u, err := url.Parse(b)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("--api %q: want http://host:port", b)
		}
		c.bases = append(c.bases, strings.TrimSuffix(b, "/"))
	}
	if len(c.bases) == 0 {
		if cfg.HTTPAddr == "" || cfg.HTTPAddr == "off" {
			return nil, errors.New("--api: no broker to ask (http-addr is off): give --api http://host:port")
		}
		host, port, err := net.SplitHostPort(cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("http-addr %q: %w", cfg.HTTPAddr, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		c.bases = []string{"http://" + net.JoinHostPort(host, port)}
	}
	return c, nil
}

// do sends method path (under admin.Prefix) with body as JSON to base and
// decodes the answer into out (when not nil). An error answer is an error
// naming the broker and saying the API's reason; a 404 wraps
// errAPINotFound.
func (c *apiClient) do(ctx context.Context, base, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+strings.TrimSuffix(admin.Prefix, "/")+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", base, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API %s: %w", base, err)
	}
	if res.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		if res.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s: %w: %s", base, errAPINotFound, e.Error)
		}
		return fmt.Errorf("%s: %s (HTTP %d)", base, e.Error, res.StatusCode)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("admin API %s: %s %s: %w", base, method, path, err)
		}
	}
	return nil
}

// broker is the name of the broker at base, as its overview says.
func (c *apiClient) broker(ctx context.Context, base string) (string, error) {
	var o admin.Overview
	if err := c.do(ctx, base, http.MethodGet, "/overview", nil, &o); err != nil {
		return "", err
	}
	if o.Broker.Name == "" {
		return base, nil
	}
	return o.Broker.Name, nil
}

// onEach runs f for each broker of --api with its name. It goes on past a
// broker's error and returns them all, with how many brokers succeeded.
func (c *apiClient) onEach(ctx context.Context, f func(base, broker string) error) (ok int, err error) {
	var errs []error
	for _, base := range c.bases {
		name, err := c.broker(ctx, base)
		if err == nil {
			err = f(base, name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ok++
	}
	return ok, errors.Join(errs...)
}

// onEachFound is onEach for a change of something that may live on some
// brokers only (a topic, a group): a broker where it is not found is
// skipped, and it is an error only when no broker has it.
func (c *apiClient) onEachFound(ctx context.Context, what string, f func(base, broker string) error) error {
	var notFound []error
	ok, err := c.onEach(ctx, func(base, broker string) error {
		err := f(base, broker)
		if errors.Is(err, errAPINotFound) {
			notFound = append(notFound, err)
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if ok == len(notFound) { // found on none
		return fmt.Errorf("%s: %w", what, errors.Join(notFound...))
	}
	return nil
}
