package client

import (
	"slices"
	"sync"
)

// allocate is RocketMQ's AllocateMessageQueueAveragely: the queues, sorted
// by broker name and queue id, are cut into len(ids) consecutive ranges as
// even as can be, the first len(queues)%len(ids) members taking one more;
// the member at me's index in the sorted ids gets its range. A member not
// in ids gets nothing.
func allocate(queues []messageQueue, ids []string, me string) []messageQueue {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	queues = slices.Clone(queues)
	slices.SortFunc(queues, compareQueues)
	index := slices.Index(ids, me)
	if index < 0 || len(queues) == 0 {
		return nil
	}
	n, m := len(queues), len(ids)
	mod := n % m
	size := 1
	if n > m {
		size = n / m
		if mod > 0 && index < mod {
			size++
		}
	}
	start := index*size + mod
	if mod > 0 && index < mod {
		start = index * size
	}
	count := min(size, n-start)
	var out []messageQueue
	for i := 0; i < count; i++ {
		out = append(out, queues[(start+i)%n])
	}
	return out
}

// offsetTracker follows the messages of one queue between the pull and
// their handlers: the committed offset is the lowest one pulled and not
// yet done, or, when all are done, the offset to pull next. It is safe for
// concurrent use.
type offsetTracker struct {
	mu      sync.Mutex
	known   bool         // the start offset is known
	next    int64        // the offset to pull next
	pending []pendingMsg // pulled, in offset order; the first is never done
}

type pendingMsg struct {
	off  int64
	done bool
}

// start sets the offset pulling starts at.
func (t *offsetTracker) start(off int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.known, t.next, t.pending = true, off, nil
}

// pulled records messages handed to handlers, in increasing order, and the
// offset to pull next.
func (t *offsetTracker) pulled(offs []int64, next int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, o := range offs {
		if n := len(t.pending); n > 0 && o <= t.pending[n-1].off {
			continue // not after what was pulled: already tracked
		}
		t.pending = append(t.pending, pendingMsg{off: o})
	}
	t.next = next
}

// done records that the message at off is handled.
func (t *offsetTracker) done(off int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, found := slices.BinarySearchFunc(t.pending, off, func(p pendingMsg, o int64) int {
		switch {
		case p.off < o:
			return -1
		case p.off > o:
			return 1
		}
		return 0
	})
	if !found {
		return
	}
	t.pending[i].done = true
	n := 0
	for n < len(t.pending) && t.pending[n].done {
		n++
	}
	if n == len(t.pending) {
		t.pending = t.pending[:0]
	} else if n > 0 {
		t.pending = t.pending[n:]
	}
}

// committed is the offset to commit, false before the start is known.
func (t *offsetTracker) committed() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.known {
		return 0, false
	}
	if len(t.pending) > 0 {
		return t.pending[0].off, true
	}
	return t.next, true
}

// span is how far apart the oldest unfinished message and the newest
// pulled one are: pulling pauses while it is large (a message stuck in its
// handler must not let the others pile up behind it).
func (t *offsetTracker) span() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) == 0 {
		return 0
	}
	return t.pending[len(t.pending)-1].off - t.pending[0].off
}
