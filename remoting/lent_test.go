package remoting

import (
	"bytes"
	"testing"
)

// A server's requests with bodies of 1 KiB or more that their handler
// batches keep their bodies in the read buffer; the reader reads on into
// fresh buffers, never over a lent body, and a buffer whose lent bodies
// are all released, and which the reader left, is free again.
func TestLentBodiesStayIntact(t *testing.T) {
	var src bytes.Buffer
	const n = 40 // 40 × 4 KiB: several read buffers
	body := func(i int) []byte { return bytes.Repeat([]byte{byte('A' + i%26)}, 4096) }
	for i := range n {
		code := SendMessageV2
		if i%10 == 9 {
			code = HeartBeat // not batched: copied out
		}
		req := NewRequest(code, []Field{{"b", "topic-" + string(rune('a'+i%26))}}, body(i))
		req.Serialization = Serialization(i % 2) // JSON and RocketMQ's binary headers alike
		frame, err := AppendFrame(nil, req)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(frame)
	}
	small, _ := AppendFrame(nil, NewRequest(SendMessageV2, nil, []byte("small")))
	src.Write(small)
	fr := newFrameReader(&src, true)
	fr.lends = func(c *Command) bool { return c.Code == SendMessageV2 }
	var reqs []*Command
	leases := map[*lease]bool{}
	for range n + 1 {
		c, err := fr.readCommand(MaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, c)
		if c.lent != nil {
			leases[c.lent] = true
		}
	}
	if len(leases) < 2 {
		t.Fatalf("%d lent buffers for %d KiB of requests, want several", len(leases), n*4)
	}
	for i, c := range reqs[:n] {
		if lent := c.lent != nil; lent != (c.Code == SendMessageV2) {
			t.Fatalf("request %d (code %d): lent %v", i, c.Code, lent)
		}
		if !bytes.Equal(c.Body, body(i)) || cap(c.Body) != len(c.Body) {
			t.Fatalf("request %d: body %q… of capacity %d, want %q… capped", i, c.Body[:8], cap(c.Body), body(i)[:8])
		}
		if want := "topic-" + string(rune('a'+i%26)); c.Ext("b") != want {
			t.Fatalf("request %d: field %q, want %q", i, c.Ext("b"), want)
		}
	}
	if last := reqs[n]; string(last.Body) != "small" || last.lent != nil {
		t.Fatalf("small request: %q, lent %v", last.Body, last.lent != nil)
	}
	for _, c := range reqs {
		c.Release()
		if c.Body != nil || c.lent != nil {
			t.Fatal("Release left the body")
		}
	}
	fr.release()
	for l := range leases {
		if r := l.refs.Load(); r != 0 {
			t.Fatalf("a lent buffer has %d holders after every request was released and the reader left it", r)
		}
	}
}
