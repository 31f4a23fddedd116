package lograte

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := Limiter{Every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	if ok, n := l.allowAt(t0); !ok || n != 0 {
		t.Fatalf("first event: %v %d", ok, n)
	}
	for i := 1; i <= 3; i++ {
		if ok, _ := l.allowAt(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("event %d within the interval passed", i)
		}
	}
	if ok, n := l.allowAt(t0.Add(10 * time.Second)); !ok || n != 3 {
		t.Fatalf("after the interval: %v, %d held back, want true, 3", ok, n)
	}
}
