package remoting

import (
	"math/bits"
	"sync"
)

// Large frames (over the read buffer: a pull response of many messages, a
// batch of big sends) are read into memory of their own. Grown as the
// bytes arrive, a 1 MiB frame costs its allocation, the zeroing of it and
// about two copies of its bytes; a reader whose frames are released
// (Command.Release) gets the memory of an earlier one back instead and
// reads into it once.
//
// The length word is not trusted with fresh memory: a cached buffer is
// memory a released frame of that size already held, and without one the
// frame grows as before, as its bytes arrive.
//
// The cache is a free list by size class, bounded in bytes, not a
// sync.Pool: a consumer of big messages allocates fast enough to run a
// collection every few pulls, and each would empty a sync.Pool.
const (
	minCachedShift = 17       // 128 KiB: smaller frames fit the read buffer or cost little
	maxCachedShift = 26       // 64 MiB
	maxCachedBytes = 32 << 20 // what the free lists may hold in all
)

var frames frameCache

type frameCache struct {
	mu    sync.Mutex
	bytes int
	// free[k] holds buffers whose capacity is at least 1<<(minCachedShift+k).
	free [maxCachedShift - minCachedShift + 1][][]byte
}

// getFrame returns a cached buffer of capacity at least n, or nil.
func getFrame(n int) []byte {
	if n <= 0 {
		return nil
	}
	k := max(bits.Len(uint(n-1))-minCachedShift, 0) // the class whose every buffer holds n
	if k >= len(frames.free) {
		return nil
	}
	frames.mu.Lock()
	defer frames.mu.Unlock()
	// A frame grown to its exact size lands in the class below the one
	// that serves its size: repeats of that size find it there.
	for _, c := range []int{k, k - 1} {
		if c < 0 {
			continue
		}
		l := frames.free[c]
		for i := len(l) - 1; i >= 0; i-- {
			if b := l[i]; cap(b) >= n {
				l[i] = l[len(l)-1]
				l[len(l)-1] = nil
				frames.free[c] = l[:len(l)-1]
				frames.bytes -= cap(b)
				return b[:0]
			}
		}
	}
	return nil
}

// putFrame keeps b's memory for a later frame of at most its capacity,
// unless the cache is full.
func putFrame(b []byte) {
	k := bits.Len(uint(cap(b))) - 1 - minCachedShift // the largest class b can serve
	if k < 0 {
		return
	}
	k = min(k, len(frames.free)-1)
	frames.mu.Lock()
	defer frames.mu.Unlock()
	if frames.bytes+cap(b) > maxCachedBytes {
		return
	}
	frames.bytes += cap(b)
	frames.free[k] = append(frames.free[k], b[:0])
}

// Release gives the memory of a large frame's body back for later frames:
// for a caller that has copied out what it keeps of the body (decoded
// messages) and holds no slice of it. After it c.Body is nil. Commands
// read from the read buffer, or built, have nothing to give back: then
// it only clears Body.
func (c *Command) Release() {
	if c.frame != nil {
		putFrame(c.frame)
		c.frame = nil
	}
	c.Body = nil
}
