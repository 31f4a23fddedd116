package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrymq/ferry/client"
)

// maxTopicQueues is the most queues a broker gives a topic (core's limit).
const maxTopicQueues = 1024

// createTopic creates name on the brokers named (every broker when none
// is) and reports the queue count each broker really has. A broker keeps
// the queues a topic has: asked for fewer, it would answer success and keep
// them all, so a shrink is refused before any broker is changed. queues 0
// (--queues not given) is each broker's core.default-queues for a new
// topic, and the count it already has for an existing one.
func createTopic(cmd *cobra.Command, a *client.Admin, name string, queues int, brokers []string) error {
	ctx := cmd.Context()
	before, err := topicQueues(cmd, a, name)
	if err != nil {
		return err
	}
	if queues > 0 {
		for _, b := range slices.Sorted(maps.Keys(before)) {
			if (len(brokers) == 0 || slices.Contains(brokers, b)) && before[b] > queues {
				return fmt.Errorf("--queues %d: topic %s has %d queues on %s, and a topic's queues cannot be removed: give --queues %d or more",
					queues, name, before[b], b, before[b])
			}
		}
	} else if len(before) > 0 {
		// The brokers that lack it get the count the others have.
		queues = slices.Max(slices.Collect(maps.Values(before)))
	}
	targets := slices.Sorted(slices.Values(brokers))
	if len(targets) == 0 {
		known, err := a.Brokers(ctx)
		if err != nil {
			return err
		}
		targets = slices.Sorted(maps.Keys(known))
	}
	var change []string
	for _, b := range targets {
		if n, ok := before[b]; !ok || n != queues {
			change = append(change, b)
		}
	}
	if len(change) > 0 {
		if _, err := a.CreateTopicOn(ctx, name, queues, change); err != nil {
			return err
		}
	}
	after, err := topicQueues(cmd, a, name)
	if err != nil {
		return err
	}
	return reportTopic(cmd.OutOrStdout(), name, targets, before, after)
}

// topicQueues is the queue count of topic on each broker that has it.
func topicQueues(cmd *cobra.Command, a *client.Admin, topic string) (map[string]int, error) {
	stats, err := a.DescribeTopic(cmd.Context(), topic)
	if errors.Is(err, client.ErrNoRoute) && len(stats) == 0 {
		return map[string]int{}, nil // on no broker (yet)
	}
	if err != nil {
		return nil, err
	}
	m := make(map[string]int, len(stats))
	for _, s := range stats {
		m[s.Broker] = s.Queues
	}
	return m, nil
}

// reportTopic says what became of the topic on each target broker, the
// brokers with one outcome on one line: created r with 8 queues on a, b.
func reportTopic(w io.Writer, name string, targets []string, before, after map[string]int) error {
	lines := map[string][]string{}
	var order []string
	for _, b := range targets {
		was, had := before[b]
		now, has := after[b]
		var line string
		switch {
		case !has:
			return fmt.Errorf("topic %s is not on %s after its creation", name, b)
		case !had:
			line = fmt.Sprintf("created %s with %d queues", name, now)
		case was == now:
			line = fmt.Sprintf("%s has %d queues already", name, now)
		default:
			line = fmt.Sprintf("%s grew from %d to %d queues", name, was, now)
		}
		if _, seen := lines[line]; !seen {
			order = append(order, line)
		}
		lines[line] = append(lines[line], b)
	}
	for _, l := range order {
		if _, err := fmt.Fprintf(w, "%s on %s\n", l, strings.Join(lines[l], ", ")); err != nil {
			return err
		}
	}
	return nil
}

// checkQueuesFlag refuses a --queues the brokers would not honour.
func checkQueuesFlag(cmd *cobra.Command, queues int) error {
	if !cmd.Flags().Changed("queues") {
		return nil
	}
	if queues < 1 || queues > maxTopicQueues {
		return fmt.Errorf("--queues %d: want 1..%d (leave it out for the brokers' core.default-queues)", queues, maxTopicQueues)
	}
	return nil
}
