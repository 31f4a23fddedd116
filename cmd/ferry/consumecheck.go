package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ferrymq/ferry/client"
	"github.com/ferrymq/ferry/core/route"
)

// checkFilter refuses a --filter the brokers would refuse: the consumer
// would otherwise retry it forever, one warning at each rebalance.
func checkFilter(filter string) error {
	if _, err := route.ParseFilter(filter); err != nil {
		return fmt.Errorf("--filter %q: %w (allowed: *, a subject, a || b, or an MQTT-style filter whose + and # are whole levels, # the last)", filter, err)
	}
	return nil
}

// topicPoll is how often consume --wait asks the NameServers for the topic.
const topicPoll = 500 * time.Millisecond

// awaitTopic returns once the NameServers route topic. Without wait a
// topic they do not route is an error at once: a consumer of a missing
// topic would otherwise wait for ever, warning every few seconds, and a
// mistyped name would look like a quiet topic. With wait it says so on
// progress and polls until the topic appears or ctx ends.
func awaitTopic(ctx context.Context, opts []client.Option, topic string, wait bool, progress io.Writer) error {
	a, err := client.NewAdmin(opts...)
	if err != nil {
		return err
	}
	defer a.Close()
	said := false
	for {
		topics, err := a.Topics(ctx)
		if err != nil {
			return err
		}
		if slices.Contains(topics, topic) {
			return nil
		}
		if !wait {
			return fmt.Errorf("--topic %s: no such topic (the NameServers route %s): create it with ferry topic create %s, or give --wait to wait for it",
				topic, listTopics(topics), topic)
		}
		if !said {
			fmt.Fprintf(progress, "waiting for topic %s to be created\n", topic)
			said = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("--topic %s: still no such topic: %w", topic, ctx.Err())
		case <-time.After(topicPoll):
		}
	}
}

// listTopics names a few of the user's topics for an error, leaving out
// the internal ones (%RETRY%…, TBW102).
func listTopics(topics []string) string {
	var mine []string
	for _, t := range topics {
		if !strings.HasPrefix(t, "%") && !strings.HasPrefix(t, "rmq_sys_") && t != "TBW102" {
			mine = append(mine, t)
		}
	}
	switch {
	case len(mine) == 0:
		return "none"
	case len(mine) > 10:
		return strings.Join(mine[:10], ", ") + fmt.Sprintf(" and %d more", len(mine)-10)
	}
	return strings.Join(mine, ", ")
}
