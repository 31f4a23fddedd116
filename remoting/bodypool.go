package remoting

import (
	"math/bits"
	"sync"
	"unsafe"
)

// A server copies each request it reads out of its connection's read
// buffer, which the next read overwrites. A request with a body of 1 KiB or
// more (a send of a 4 KiB message) has its body copied into memory of a
// size class taken from a pool, and its header's strings copied on their
// own: a handler that has copied the body where it keeps it (the store's
// write buffer) gives the memory back with Command.Release, and the next
// request's body is read into it instead of into new memory the runtime
// must zero and later collect. Only the body goes back: the header's
// strings (a topic name) may be kept anywhere.
const (
	pooledBodyShift = 10 // log2(minPooledBody)
	minPooledBody   = 1 << pooledBodyShift
	maxPooledShift  = 16 // log2(maxPooledBody): a read buffer's size
	maxPooledBody   = 1 << maxPooledShift
)

// bodyPools holds the free bodies of each size class, a power of two from
// minPooledBody to maxPooledBody, by their first byte's address: an
// unsafe.Pointer in an interface allocates nothing, a slice would.
var bodyPools [maxPooledShift - pooledBodyShift + 1]sync.Pool

// bodyClass is the size class index of a body of n bytes, for
// minPooledBody ≤ n ≤ maxPooledBody.
func bodyClass(n int) int { return bits.Len(uint(n-1)) - pooledBodyShift }

// newBody is memory for a body of n bytes (minPooledBody ≤ n ≤
// maxPooledBody): a pooled buffer of its size class, or a new one.
func newBody(n int) []byte {
	k := bodyClass(n)
	size := minPooledBody << k
	if p, _ := bodyPools[k].Get().(unsafe.Pointer); p != nil {
		return unsafe.Slice((*byte)(p), size)[:n]
	}
	return make([]byte, n, size)
}

// putBody pools b's memory when it is a whole size class.
func putBody(b []byte) {
	c := cap(b)
	if c < minPooledBody || c > maxPooledBody || c&(c-1) != 0 {
		return
	}
	bodyPools[bodyClass(c)].Put(unsafe.Pointer(unsafe.SliceData(b[:1])))
}

// pooledBody reports whether a server's request with a body of n bytes has
// it copied into pooled memory.
func pooledBody(n int) bool { return n >= minPooledBody && n <= maxPooledBody }
