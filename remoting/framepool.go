package remoting

import (
	"math/bits"
	"slices"
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
// The cache is one free list, newest last, bounded in bytes: a put past
// the bound drops the oldest buffers. Not a sync.Pool: a consumer of big
// messages allocates fast enough to run a collection every few pulls, and
// each would empty a sync.Pool.
const (
	minCachedFrame = 128 << 10 // smaller frames fit the read buffer or cost little
	maxCachedFrame = 64 << 20
	maxCachedBytes = 32 << 20 // what the free list may hold in all
)

var frames frameCache

type frameCache struct {
	mu    sync.Mutex
	bytes int
	free  [][]byte
}

// frameCap is the capacity to make a frame of n bytes with: a large one's
// rounded up to a power of two, so that once cached it serves every frame
// of about its size, not only those no larger than itself.
func frameCap(n int) int {
	if n <= minCachedFrame || n > maxCachedFrame {
		return n
	}
	return 1 << bits.Len(uint(n-1))
}

// newFrame is memory for a frame of n bytes: a cached buffer, or a new
// one of frameCap(n).
func newFrame(n int) []byte {
	if b := getFrame(n); b != nil {
		return b
	}
	return make([]byte, 0, frameCap(n))
}

// getFrame returns a cached buffer for a frame of n bytes, or nil: the
// newest that holds n and is not more than twice frameCap(n).
func getFrame(n int) []byte {
	if n <= 0 || n > maxCachedFrame {
		return nil
	}
	most := 2 * frameCap(n)
	frames.mu.Lock()
	defer frames.mu.Unlock()
	for i := len(frames.free) - 1; i >= 0; i-- {
		if b := frames.free[i]; cap(b) >= n && cap(b) <= most {
			frames.free = slices.Delete(frames.free, i, i+1)
			frames.bytes -= cap(b)
			return b[:0]
		}
	}
	return nil
}

// putFrame keeps b's memory for a later frame, dropping the oldest
// buffers when the cache would hold too much.
func putFrame(b []byte) {
	if cap(b) < minCachedFrame || cap(b) > maxCachedFrame {
		return
	}
	frames.mu.Lock()
	defer frames.mu.Unlock()
	frames.free = append(frames.free, b[:0])
	frames.bytes += cap(b)
	k := 0
	for frames.bytes > maxCachedBytes {
		frames.bytes -= cap(frames.free[k])
		k++
	}
	if k > 0 {
		frames.free = slices.Delete(frames.free, 0, k)
	}
}

// Release gives the memory of a large frame's body, or of a server's
// request body lent from its read buffer (lent.go), back for later reads: for
// a caller that has copied out what it keeps of the body (decoded
// messages, a stored record) and holds no slice of it. After it c.Body is
// nil. Other commands read from the read buffer, or built, have nothing
// to give back: then it only clears Body.
func (c *Command) Release() {
	if c.lent != nil {
		c.lent.drop()
		c.lent = nil
	}
	if c.frame != nil {
		putFrame(c.frame)
		c.frame = nil
	}
	c.Body = nil
}

// BodyBuffer is memory for a body of about n bytes that a command will
// give its connection (GiveBody): a large one is taken from the memory of
// frames written or released before.
func BodyBuffer(n int) []byte { return newFrame(n) }

// GiveBody sets c's body to b and hands b's memory over: once a
// connection's Send has written c's frame into its own buffers, b goes
// back to the large-frame cache, for later frames and bodies, and c.Body
// is nil. The caller keeps no slice of b.
func (c *Command) GiveBody(b []byte) {
	c.Body = b
	c.bodyGiven = true
}

// takeGivenBodies returns the given bodies of cmds, which their frames no
// longer need, to the cache.
func takeGivenBodies(cmds []*Command) {
	for _, c := range cmds {
		if c.bodyGiven {
			putFrame(c.Body)
			c.Body, c.bodyGiven = nil, false
		}
	}
}
