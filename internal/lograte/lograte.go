// Package lograte keeps a repeated log line from flooding the log: a
// Limiter lets one line through per interval and counts the ones it held
// back, which the next line that passes reports.
package lograte

import (
	"sync"
	"time"
)

// Limiter passes at most one event per Every. The zero value passes one a
// minute. It is safe for concurrent use.
type Limiter struct {
	Every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int64
}

// Allow reports whether an event now may be logged and, when it may, how
// many were held back since the last one that was.
func (l *Limiter) Allow() (ok bool, suppressed int64) {
	return l.allowAt(time.Now())
}

func (l *Limiter) allowAt(now time.Time) (bool, int64) {
	every := l.Every
	if every <= 0 {
		every = time.Minute
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
