package remoting

import (
	"sync"
	"time"
)

// logEvery is how often a rate-limited kind of log line may be written.
const logEvery = 10 * time.Second

// rateLog lets one kind of log line through at most once per logEvery, so
// that a flood of bad clients does not flood the log.
type rateLog struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether a line may be written now, and how many were
// suppressed since the last one.
func (l *rateLog) allow() (bool, int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed, l.next = 0, now.Add(logEvery)
	return true, n
}
