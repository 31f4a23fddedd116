package remoting

import (
	"bytes"
	"testing"
)

// A server's request with a body of a pooled size has its body in pooled
// memory and its header's strings apart from it: once released, the body's
// memory serves later requests and the strings read the same.
func TestRequestBodyPooledAndReleased(t *testing.T) {
	var src bytes.Buffer
	bodies := [][]byte{bytes.Repeat([]byte("a"), 4096), bytes.Repeat([]byte("b"), 4096), bytes.Repeat([]byte("c"), 100)}
	for i, body := range bodies {
		req := NewRequest(SendMessageV2, []Field{{"b", "topic-" + string(rune('x'+i))}}, body)
		req.Serialization = Serialization(i % 2) // JSON and RocketMQ's binary headers alike
		frame, err := AppendFrame(nil, req)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(frame)
	}
	fr := newFrameReader(&src, true)
	first, err := fr.readCommand(MaxFrame)
	if err != nil || !bytes.Equal(first.Body, bodies[0]) {
		t.Fatalf("first request: %v, body %q…", err, first.Body[:8])
	}
	if cap(first.frame) != 4096 || cap(first.Body) != len(first.Body) {
		t.Fatalf("body in memory of capacity %d, frame of %d: want a pooled 4 KiB class, the body capped", cap(first.Body), cap(first.frame))
	}
	first.Release()
	if first.Body != nil || first.frame != nil {
		t.Fatal("Release left the body")
	}
	second, err := fr.readCommand(MaxFrame)
	if err != nil || !bytes.Equal(second.Body, bodies[1]) {
		t.Fatalf("second request: %v", err)
	}
	if got := first.Ext("b"); got != "topic-x" {
		t.Fatalf("the released request's header field reads %q after the next request was read, want topic-x", got)
	}
	small, err := fr.readCommand(MaxFrame)
	if err != nil || !bytes.Equal(small.Body, bodies[2]) || small.frame != nil {
		t.Fatalf("small request: %v, pooled %v", err, small.frame != nil)
	}
}

func TestBodyClasses(t *testing.T) {
	for _, c := range []struct{ n, size int }{{1024, 1024}, {1025, 2048}, {4096, 4096}, {4097, 8192}, {65536, 65536}} {
		b := newBody(c.n)
		if len(b) != c.n || cap(b) != c.size {
			t.Errorf("newBody(%d): len %d cap %d, want cap %d", c.n, len(b), cap(b), c.size)
		}
		putBody(b)
	}
	putBody(make([]byte, 3000)) // not a class: dropped
	if b := newBody(3000); cap(b) != 4096 {
		t.Errorf("newBody(3000) has capacity %d, want 4096", cap(b))
	}
}
