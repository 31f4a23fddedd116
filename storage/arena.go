package storage

import (
	"math/bits"
	"sync"
)

// A read copies its records out of the log into an arena, which the
// messages it returns point into (bodies, and strings without copies). A
// reader that is done with them (ReadResult.Release: a pull that has
// encoded its response) gives the arena back for later reads: at 4 KiB a
// message, the arenas were a fifth of the bytes a broker allocated per
// message published and delivered, and each allocation is also zeroed.
//
// Arenas are kept by size class, powers of two from minArena to maxArena,
// in a sync.Pool each: a read takes the class that holds what it needs.
const (
	minArenaShift = 9  // 512 B: a read of one small message (a subscriber at the head of its queue)
	maxArenaShift = 23 // 8 MiB: a read's default MaxBytes, 4 MiB, and its first record over it
)

var arenas [maxArenaShift - minArenaShift + 1]sync.Pool // of *[]byte

// arenaClass is the size class of an arena of at least n bytes, and
// false when n is over the largest class.
func arenaClass(n int) (int, bool) {
	shift := max(bits.Len(uint(max(n, 1)-1)), minArenaShift)
	if shift > maxArenaShift {
		return 0, false
	}
	return shift - minArenaShift, true
}

// getArena returns an empty arena of at least n bytes: a pooled one, or a
// new one of its class's size (of n when over the largest class).
func getArena(n int) *[]byte {
	c, ok := arenaClass(n)
	if !ok {
		return exactArena(n)
	}
	if p, _ := arenas[c].Get().(*[]byte); p != nil {
		return p
	}
	b := make([]byte, 0, 1<<(c+minArenaShift))
	return &b
}

// exactArena returns a new arena of n bytes, pooled by no class: one over
// the largest class, or one that is never given back (ReadOptions.Kept).
func exactArena(n int) *[]byte {
	b := make([]byte, 0, n)
	return &b
}

// putArena gives an arena back. Its bytes must no longer be referred to.
func putArena(p *[]byte) {
	if c, ok := arenaClass(cap(*p)); ok && cap(*p) == 1<<(c+minArenaShift) {
		*p = (*p)[:0]
		arenas[c].Put(p)
	}
}
