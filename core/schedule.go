package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/ferrymq/ferry/storage"
)

// Delayed messages wait in the internal topic %SCHEDULE%, one queue per hop:
// a message due in d goes to the queue of the largest hop not over d. Every
// message of a queue waits the same hop, so each queue is in due order and
// the scheduler only ever looks at queue heads. When a head is due, the
// message is delivered if its time has come, or else scheduled again for
// what remains (a 5 h delay is hops of 2 h, 2 h, 1 h). A message is never
// delivered early, and late by at most the smallest hop.
//
// The scheduler's position in each queue is a state record, written in the
// same append as the message a move stores (storeWithState): pending
// delayed messages (and retries) survive a restart or a crash, and one
// moved just before a crash is not moved again.
var hops = []time.Duration{
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour,
}

func hopFor(d time.Duration) int {
	q := 0
	for i, h := range hops {
		if h <= d {
			q = i
		}
	}
	return q
}

type scheduler struct {
	b *Broker

	mu    sync.Mutex
	pos   []int64 // next offset of each hop queue
	dirty bool
}

// schedulePrefix keys the state records of the scheduler's positions:
// "core/schedule/Q" is the next offset of hop queue Q.
const schedulePrefix = coreNamespace + "/schedule/"

func scheduleKey(q int) string { return schedulePrefix + strconv.Itoa(q) }

func schedulePos(q int, off int64) stateChange {
	return stateChange{key: scheduleKey(q), val: strconv.AppendInt(nil, off, 10)}
}

func newScheduler(b *Broker) (*scheduler, error) {
	s := &scheduler{b: b, pos: make([]int64, len(hops))}
	for q := range hops {
		var saved int64
		if raw := b.state.get(scheduleKey(q)); raw != nil {
			if err := json.Unmarshal(raw, &saved); err != nil {
				return nil, fmt.Errorf("core: load the scheduler's position in queue %d: %w", q, err)
			}
		}
		lo, _ := b.store.Offsets(scheduleTopic, q)
		s.pos[q] = max(saved, lo)
	}
	return s, nil
}

// schedule stores msgs (all to be delivered later, to their topic and
// queue) in the hop queue for their delay.
func (s *scheduler) schedule(ctx context.Context, msgs []*Message) ([]PublishResult, error) {
	wrapped := make([]*Message, len(msgs))
	for i, m := range msgs {
		w := parked(m, m.QueueID, scheduleTopic, hopFor(time.Until(time.Unix(0, m.DeliverAt))))
		wrapped[i] = &w
	}
	// One batch goes to one hop queue (the store keeps a batch together).
	var out []PublishResult
	for len(wrapped) > 0 {
		n := 1
		for n < len(wrapped) && wrapped[n].QueueID == wrapped[0].QueueID {
			n++
		}
		res, err := s.b.store1(ctx, wrapped[:n])
		for i := range res {
			res[i].Delayed = true
			msgs[len(out)+i].LogOffset = wrapped[i].LogOffset
		}
		out = append(out, res...)
		if err != nil {
			return out, err
		}
		wrapped = wrapped[n:]
	}
	return out, nil
}

// run delivers due messages until stop. It sleeps until the next head is
// due or a hop queue gets a message.
func (s *scheduler) run(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	cases := []reflect.SelectCase{
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(stop)},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
	}
	for {
		cases = cases[:2]
		for q := range hops {
			ch, err := s.b.store.WaitCh(scheduleTopic, q) // before the pass: no wake-up is lost
			if err != nil {
				s.b.logger.Error("core: scheduler wait", "err", err)
				return
			}
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		next := s.pass(time.Now())
		wait := time.Until(next)
		if next.IsZero() {
			wait = time.Hour
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(wait, time.Millisecond))
		if i, _, _ := reflect.Select(cases); i == 0 {
			return
		}
	}
}

// pass delivers every due head message and returns when the next one is
// due (zero if none waits).
func (s *scheduler) pass(now time.Time) time.Time {
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for q := range hops {
		for {
			s.mu.Lock()
			pos := s.pos[q]
			s.mu.Unlock()
			res, err := s.b.store.Read(scheduleTopic, q, pos, storage.ReadOptions{MaxCount: 64})
			var oe *storage.OffsetError
			if errors.As(err, &oe) && pos < oe.Min {
				s.setPos(q, oe.Min) // trimmed by retention
				continue
			}
			if err != nil {
				s.b.logger.Error("core: scheduler read", "queue", q, "err", err)
				soonest(now.Add(time.Second))
				break
			}
			if len(res.Messages) == 0 {
				if res.Next != pos {
					s.setPos(q, res.Next)
				}
				break
			}
			stopped := false
			for i := range res.Messages {
				m := &res.Messages[i]
				due := time.Unix(0, min(m.StoreTime+int64(hops[q]), m.DeliverAt))
				if due.After(now) {
					soonest(due)
					stopped = true
					break
				}
				if err := s.release(m, q, now); err != nil {
					s.b.logger.Error("core: scheduler delivery; retrying in 1s", "err", err)
					soonest(now.Add(time.Second))
					stopped = true
					break
				}
			}
			if stopped {
				break
			}
		}
	}
	return next
}

// parked is m stored aside in an internal topic's queue (the scheduler's
// hop queues, the half messages'), its destination (its topic and
// realQueue) kept in properties for when it is released. m is not changed.
func parked(m *Message, realQueue int, topic string, queue int) Message {
	w := *m
	w.Properties = m.Properties.Clone(2)
	w.Properties.Set(propRealTopic, m.Topic)
	w.Properties.Set(propRealQueue, strconv.Itoa(realQueue))
	w.Topic, w.QueueID = topic, queue
	return w
}

// release delivers m, the head of hop queue q, to its real topic, or
// schedules it again for what remains of its delay, and moves q's position
// past it in the same append: a restart does not move it again.
func (s *scheduler) release(m *Message, q int, now time.Time) error {
	next := m.QueueOffset + 1
	out := *m
	out.Properties = m.Properties.Clone(0)
	remaining := time.Duration(m.DeliverAt - now.UnixNano())
	if remaining > 0 {
		out.QueueID = hopFor(remaining)
		return s.moveTo(q, next, &out)
	}
	out.Topic = out.Properties.Get(propRealTopic)
	dest, err := strconv.Atoi(out.Properties.Get(propRealQueue))
	if err != nil || storage.ValidTopic(out.Topic) != nil {
		s.b.logger.Error("core: scheduled message without a valid destination; dropped",
			"id", s.b.store.MessageID(m.LogOffset), "topic", out.Topic, "queue", out.Properties.Get(propRealQueue))
		s.setPos(q, next)
		return nil
	}
	out.Properties.Del(propRealTopic)
	out.Properties.Del(propRealQueue)
	out.QueueID = dest
	out.DeliverAt = 0
	return s.moveTo(q, next, &out)
}

// moveTo stores out and hop queue q's new position next in one append.
func (s *scheduler) moveTo(q int, next int64, out *Message) error {
	if _, err := s.b.storeWithState(context.Background(), []*Message{out}, schedulePos(q, next)); err != nil {
		return err
	}
	s.mu.Lock()
	s.pos[q] = next
	s.mu.Unlock()
	return nil
}

func (s *scheduler) setPos(q int, off int64) {
	s.mu.Lock()
	s.pos[q] = off
	s.dirty = true
	s.mu.Unlock()
}

// save writes the positions if they moved.
func (s *scheduler) save() error {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	changes := make([]stateChange, len(s.pos))
	for q, p := range s.pos {
		changes[q] = schedulePos(q, p)
	}
	s.dirty = false
	s.mu.Unlock()
	if err := s.b.state.write(context.Background(), changes, true); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("core: save scheduler positions: %w", err)
	}
	return nil
}
