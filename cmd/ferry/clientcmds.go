package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/config"
)

// nameServers splits the namesrv setting.
func nameServers(cfg config.Config) []string {
	return splitAddrs(cfg.Namesrv)
}

// clientOptions are the SDK options every client command starts from: the
// configured NameServers, credentials and the command's logger; extra ones
// follow.
func clientOptions(cmd *cobra.Command, cfg config.Config, extra ...client.Option) ([]client.Option, error) {
	opts := []client.Option{client.WithNameServers(nameServers(cfg)...), client.WithLogger(newLogger(cfg.Log, cmd.ErrOrStderr()))}
	if cfg.Username != "" {
		opts = append(opts, client.WithCredentials(cfg.Username, cfg.Password))
	}
	if cfg.TLS || cfg.TLSCA != "" {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLSCA != "" {
			pem, err := os.ReadFile(cfg.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("tls-ca: %w", err)
			}
			roots, err := x509.SystemCertPool()
			if err != nil {
				roots = x509.NewCertPool()
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls-ca %s: no PEM certificate in it", cfg.TLSCA)
			}
			tlsCfg.RootCAs = roots
		}
		opts = append(opts, client.WithTLS(tlsCfg))
	}
	return append(opts, extra...), nil
}

// addClientFlags adds the flags every client command has: where the
// NameServers are, and the credentials.
func addClientFlags(fs *pflag.FlagSet) {
	config.AddFlag(fs, "namesrv", "namesrv", "NameServer addresses, comma separated")
	config.AddFlag(fs, "username", "username", "username for brokers that check credentials (auth.password-file)")
	config.AddFlag(fs, "password", "password", "its password; prefer the environment variable, which ps does not show")
	config.AddFlag(fs, "tls", "tls", "reach the brokers over TLS (their native.tls-cert)")
	config.AddFlag(fs, "tls-ca", "tls-ca", "PEM file of certificates to trust besides the system's (implies --tls)")
}

// interruptible is a context that ends on SIGINT or SIGTERM.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newProduceCmd() *cobra.Command {
	var topic, subject, key string
	var count, size int
	cmd := &cobra.Command{
		Use:   "produce --topic T [BODY]",
		Short: "Send messages: BODY --count times, random bodies of --size bytes, or each line of stdin; prints each one's msgId and offsetMsgId",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx, stop := interruptible()
			defer stop()
			opts, err := clientOptions(cmd, cfg)
			if err != nil {
				return err
			}
			p, err := client.NewProducer(opts...)
			if err != nil {
				return err
			}
			defer p.Close()
			// One line a message sent: its msgId (the client's UNIQ_KEY) and
			// offsetMsgId (the broker's address and log offset), as RocketMQ
			// names them: what a lookup of the message takes.
			ids := bufio.NewWriter(cmd.OutOrStdout())
			defer ids.Flush()
			send := func(body []byte) error {
				m := &client.Message{Topic: topic, Tag: subject, Body: body}
				if key != "" {
					m.Keys, m.ShardingKey = []string{key}, key
				}
				res, err := p.Send(ctx, m)
				if err == nil {
					fmt.Fprintf(ids, "%s %s\n", res.MsgID, res.OffsetMsgID)
				}
				return err
			}
			sent := 0
			var shown atomic.Int64 // sent, for the progress lines
			defer func() { fmt.Fprintf(cmd.ErrOrStderr(), "sent %d messages to %s\n", sent, topic) }()
			if showsProgress(cmd.ErrOrStderr(), count) { // stopped before the line above
				defer startProgress(ctx, cmd.ErrOrStderr(), "sent", &shown, int64(count), time.Second)()
			}
			switch {
			case len(args) == 1 || size > 0:
				for ; sent < max(count, 1); sent++ {
					body := []byte(nil)
					if len(args) == 1 {
						body = []byte(args[0])
					} else {
						body = make([]byte, size)
						rand.Read(body)
					}
					if err := send(body); err != nil {
						return err
					}
					shown.Store(int64(sent + 1))
				}
			default:
				sc := bufio.NewScanner(cmd.InOrStdin())
				sc.Buffer(make([]byte, 64<<10), 16<<20)
				for sc.Scan() && (count == 0 || sent < count) {
					if err := send(append([]byte(nil), sc.Bytes()...)); err != nil {
						return err
					}
					sent++
					shown.Store(int64(sent))
				}
				return sc.Err()
			}
			return nil
		},
	}
	fs := cmd.Flags()
	addClientFlags(fs)
	fs.StringVar(&topic, "topic", "", "topic to send to (required)")
	fs.StringVar(&subject, "subject", "", "subject (the RocketMQ tag), e.g. 42/telemetry")
	fs.StringVar(&key, "key", "", "message key; also picks the queue, so one key keeps its order")
	fs.IntVar(&count, "count", 0, "messages to send (default: 1 with BODY or --size, all of stdin otherwise)")
	fs.IntVar(&size, "size", 0, "random bodies of this many bytes")
	cmd.MarkFlagRequired("topic")
	return cmd
}

func newConsumeCmd() *cobra.Command {
	var topic, group, filter, from, format string
	var count int
	var wait bool
	cmd := &cobra.Command{
		Use:   "consume --topic T --group G",
		Short: "Receive messages, one body a line on stdout (or --format text, json), until --count or Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			var start client.ConsumeFrom
			switch from {
			case "first":
				start = client.ConsumeFromFirst
			case "last":
				start = client.ConsumeFromLast
			default:
				return fmt.Errorf("--from %q: want first or last", from)
			}
			if err := checkFilter(filter); err != nil {
				return err
			}
			if err := checkConsumeFormat(format); err != nil {
				return err
			}
			ctx, stop := interruptible()
			defer stop()
			opts, err := clientOptions(cmd, cfg, client.WithConsumeFrom(start), client.WithConcurrency(1))
			if err != nil {
				return err
			}
			if err := awaitTopic(ctx, opts, topic, wait, cmd.ErrOrStderr()); err != nil {
				return err
			}
			c, err := client.NewPushConsumer(group, opts...)
			if err != nil {
				return err
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			var mu sync.Mutex
			got := 0
			var shown atomic.Int64 // got, for the progress lines
			done, finish := context.WithCancel(ctx)
			defer finish()
			err = c.Subscribe(topic, filter, func(_ context.Context, m *client.MessageExt) error {
				mu.Lock()
				defer mu.Unlock()
				if count > 0 && got >= count {
					return fmt.Errorf("enough messages") // redelivered to the group later
				}
				if err := writeConsumed(out, m, format); err != nil {
					return err
				}
				got++
				shown.Store(int64(got))
				if count > 0 && got == count {
					finish()
				}
				return out.Flush()
			})
			if err != nil {
				return err
			}
			if count >= progressMin && isTerminal(cmd.ErrOrStderr()) { // on stderr: stdout is the messages
				defer startProgress(done, cmd.ErrOrStderr(), "received", &shown, int64(count), time.Second)()
			}
			if err := c.Start(ctx); err != nil {
				return err
			}
			<-done.Done()
			return c.Close()
		},
	}
	fs := cmd.Flags()
	addClientFlags(fs)
	fs.StringVar(&topic, "topic", "", "topic to read (required)")
	fs.StringVar(&group, "group", "", "consumer group (required)")
	fs.StringVar(&filter, "filter", "*", "subject filter: *, a || b, or an MQTT-style wildcard such as +/telemetry")
	fs.IntVar(&count, "count", 0, "stop after this many messages (0: until interrupted)")
	fs.StringVar(&from, "from", "first", "where a new group starts: first or last")
	fs.BoolVar(&wait, "wait", false, "wait for the topic to be created (without it a topic the NameServers do not route is an error)")
	fs.StringVar(&format, "format", "body", "what to print of each message: "+consumeFormats)
	cmd.MarkFlagRequired("topic")
	cmd.MarkFlagRequired("group")
	return cmd
}
