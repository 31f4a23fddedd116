package amqp

import (
	"slices"
	"testing"
)

func tagsOf(us []*unacked) []uint64 {
	var ts []uint64
	for _, u := range us {
		ts = append(ts, u.tag)
	}
	return ts
}

// The list keeps tag order through single acks anywhere, multiple acks
// (prefixes, tag 0 for all) and pushes after both.
func TestUnackedListOrder(t *testing.T) {
	var l unackedList
	for tag := uint64(1); tag <= 10; tag++ {
		l.push(&unacked{tag: tag})
	}
	if u := l.take(5); u == nil || u.tag != 5 {
		t.Fatalf("take(5) = %v", u)
	}
	if u := l.take(5); u != nil {
		t.Fatalf("take(5) again = %v, want nil", u)
	}
	if u := l.take(1); u == nil || u.tag != 1 {
		t.Fatalf("take(1) = %v", u)
	}
	if u := l.take(11); u != nil {
		t.Fatalf("take(11) = %v, want nil", u)
	}
	first := l.takeThrough(6) // 2, 3, 4, 6
	if got := tagsOf(first); !slices.Equal(got, []uint64{2, 3, 4, 6}) {
		t.Fatalf("takeThrough(6) = %v", got)
	}
	for tag := uint64(11); tag <= 12; tag++ {
		l.push(&unacked{tag: tag})
	}
	if got := tagsOf(first); !slices.Equal(got, []uint64{2, 3, 4, 6}) {
		t.Fatalf("pushes changed a taken prefix: %v", got)
	}
	if got := tagsOf(l.takeThrough(100)); !slices.Equal(got, []uint64{7, 8, 9, 10, 11, 12}) {
		t.Fatalf("takeThrough(100) = %v", got)
	}
	if l.len() != 0 || l.takeThrough(0) != nil {
		t.Fatalf("list not empty: %d", l.len())
	}
	l.push(&unacked{tag: 13})
	l.push(&unacked{tag: 14})
	if got := tagsOf(l.takeAll()); !slices.Equal(got, []uint64{13, 14}) {
		t.Fatalf("takeAll = %v", got)
	}
}
