package remoting

import (
	"bytes"
	"net"
	"testing"
)

// emptyFrameCache empties the process's large-frame cache now and when t
// ends: frames other tests wrote or released would serve these tests'
// frames, and these tests' buffers would serve theirs.
func emptyFrameCache(t *testing.T) {
	empty := func() {
		frames.mu.Lock()
		defer frames.mu.Unlock()
		frames.free, frames.bytes = nil, 0
	}
	empty()
	t.Cleanup(empty)
}

// TestFrameCacheClasses checks that a released buffer serves later frames
// of at most its capacity, the exact-size ones among them, and no larger.
func TestFrameCacheClasses(t *testing.T) {
	emptyFrameCache(t)
	b := make([]byte, 0, 1100<<10) // a frame grown to its exact size: 1.1 MiB
	putFrame(b)
	if got := getFrame(1200 << 10); got != nil {
		t.Fatalf("a frame of 1.2 MiB got a buffer of %d bytes", cap(got))
	}
	got := getFrame(1100 << 10)
	if cap(got) != cap(b) || len(got) != 0 {
		t.Fatalf("a frame of its own size got len %d cap %d, want the released buffer (cap %d)", len(got), cap(got), cap(b))
	}
	if getFrame(1100<<10) != nil {
		t.Fatal("one released buffer was handed out twice")
	}
	putFrame(make([]byte, 0, 1<<10)) // too small to keep
	if getFrame(1<<10) != nil {
		t.Fatal("a buffer under the smallest class was kept")
	}
	for range maxCachedBytes/(4<<20) + 2 {
		putFrame(make([]byte, 0, 4<<20))
	}
	if frames.bytes > maxCachedBytes {
		t.Fatalf("the cache holds %d bytes, over its bound of %d", frames.bytes, maxCachedBytes)
	}
}

// TestReleasedFrameIsReused reads two large frames, releasing the first:
// the second is read into the first's memory, and decodes whole.
func TestReleasedFrameIsReused(t *testing.T) {
	emptyFrameCache(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	body := bytes.Repeat([]byte("ferry"), 100_000) // 500 KB: over the read buffer
	go func() {
		for range 2 {
			frame, err := AppendFrame(nil, &Command{Code: Success, Flag: FlagResponse, Body: body})
			if err != nil {
				panic(err)
			}
			a.Write(frame)
		}
	}()
	fr := newFrameReader(b, false)
	first, err := fr.readCommand(16 << 20)
	if err != nil || !bytes.Equal(first.Body, body) {
		t.Fatalf("first frame: %v, body of %d bytes", err, len(first.Body))
	}
	mem := &first.frame[:1][0]
	first.Release()
	if first.Body != nil {
		t.Fatal("Release left the body")
	}
	second, err := fr.readCommand(16 << 20)
	if err != nil || !bytes.Equal(second.Body, body) {
		t.Fatalf("second frame: %v, body of %d bytes", err, len(second.Body))
	}
	if &second.frame[:1][0] != mem {
		t.Fatal("the second frame was not read into the released one's memory")
	}
}
