package replication

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ferrymq/ferry/storage"
)

// EpochTopic is the internal topic whose queue 0 holds the epoch history:
// one record per epoch, body the decimal epoch number, at the log offset
// where the epoch starts. The log carries its history, so a copy of the log
// has it and a truncation removes what it cut.
const EpochTopic = "%EPOCH%"

// Epoch is epoch N, which starts at log offset Start.
type Epoch struct {
	N     int64
	Start int64
}

// Epochs reads the log's epoch history, oldest first (retention may have
// removed the oldest).
func Epochs(s *storage.Store) ([]Epoch, error) {
	lo, hi := s.Offsets(EpochTopic, 0)
	var out []Epoch
	for off := lo; off < hi; {
		r, err := s.Read(EpochTopic, 0, off, storage.ReadOptions{MaxCount: 1024})
		if err != nil {
			return nil, fmt.Errorf("replication: epoch history: %w", err)
		}
		for _, m := range r.Messages {
			n, err := strconv.ParseInt(string(m.Body), 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("replication: epoch record at log offset %d: body %.20q is not an epoch number", m.LogOffset, m.Body)
			}
			if k := len(out); k > 0 && n <= out[k-1].N {
				return nil, fmt.Errorf("replication: epoch record at log offset %d: epoch %d after %d", m.LogOffset, n, out[k-1].N)
			}
			out = append(out, Epoch{N: n, Start: m.LogOffset})
		}
		if r.Next == off {
			break
		}
		off = r.Next
	}
	return out, nil
}

// BeginEpoch starts epoch n at the log's end: it appends the epoch record
// (n must be above the log's last epoch) and waits until it is on disk. The
// store must not be fenced; the ack gate is not waited for.
func BeginEpoch(ctx context.Context, s *storage.Store, n int64) (Epoch, error) {
	hist, err := Epochs(s)
	if err != nil {
		return Epoch{}, err
	}
	if k := len(hist); k > 0 && n <= hist[k-1].N {
		return Epoch{}, fmt.Errorf("replication: epoch %d is not above the log's last, %d", n, hist[k-1].N)
	}
	m := &storage.Message{Topic: EpochTopic, Body: []byte(strconv.FormatInt(n, 10))}
	if _, end, err := s.AppendBatchNoWait([]*storage.Message{m}); err != nil {
		return Epoch{}, fmt.Errorf("replication: begin epoch %d: %w", n, err)
	} else if err := s.WaitSynced(ctx, end); err != nil {
		return Epoch{}, fmt.Errorf("replication: begin epoch %d: %w", n, err)
	}
	return Epoch{N: n, Start: m.LogOffset}, nil
}

// divergence is where a replica's log must be cut to be a prefix of the
// master's (the leader-epoch rule of Kafka, RocketMQ 5's epoch file): the
// newest epoch both histories hold, with the same start, is shared up to
// where either log moved on from it (its next epoch's start, or its end).
// With no epoch in common, the logs share only what precedes both
// histories (a log from before replication, under one log id).
func divergence(replica, master []Epoch, replicaEnd, masterEnd int64) int64 {
	for i := len(replica) - 1; i >= 0; i-- {
		for j := len(master) - 1; j >= 0; j-- {
			if replica[i] != master[j] {
				continue
			}
			endR, endM := replicaEnd, masterEnd
			if i+1 < len(replica) {
				endR = replica[i+1].Start
			}
			if j+1 < len(master) {
				endM = master[j+1].Start
			}
			return min(endR, endM, replicaEnd, masterEnd)
		}
	}
	d := min(replicaEnd, masterEnd)
	if len(replica) > 0 {
		d = min(d, replica[0].Start)
	}
	if len(master) > 0 {
		d = min(d, master[0].Start)
	}
	return d
}
