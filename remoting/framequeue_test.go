package remoting

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"testing"
)

// TestFrameQueue queues small frames past a chunk's end, a frame larger than
// a chunk and both serializations, writes them as the writer does and reads
// them back in order; written chunks are reused.
func TestFrameQueue(t *testing.T) {
	var q frameQueue
	var want []*Command
	add := func(c *Command) {
		t.Helper()
		if _, err := q.add(c); err != nil {
			t.Fatal(err)
		}
		want = append(want, c)
	}
	for i := range 3 * chunkSize / 1000 { // about three chunks of ~1 KB frames
		c := NewRequest(int16(i%100), Pairs("i", strconv.Itoa(i)), bytes.Repeat([]byte{byte(i)}, 900))
		c.Opaque = int32(i)
		if i%7 == 0 {
			c.Serialization = JSON
		}
		add(c)
	}
	big := NewRequest(1, nil, bytes.Repeat([]byte("x"), 2*chunkSize))
	big.Opaque = -1
	add(big)
	add(NewRequest(2, nil, nil))
	if len(q.own) < 4 {
		t.Fatalf("%d chunks, want the frames spread over at least 4", len(q.own))
	}

	a, b := net.Pipe()
	defer a.Close()
	done := make(chan error, 1)
	bufs := q.take()
	go func() {
		_, err := writeChunks(a, bufs.segs, nil)
		done <- err
	}()
	r := bufio.NewReader(b)
	for i, w := range want {
		got, err := ReadCommand(r, 16<<20)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.Code != w.Code || got.Opaque != w.Opaque || !bytes.Equal(got.Body, w.Body) || got.Ext("i") != w.Ext("i") {
			t.Fatalf("frame %d: got code %d opaque %d (%d bytes), want code %d opaque %d (%d bytes)",
				i, got.Code, got.Opaque, len(got.Body), w.Code, w.Opaque, len(w.Body))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !q.empty() {
		t.Fatal("the queue is not empty after take")
	}
	q.giveBack(bufs)
	if len(q.free) == 0 || len(q.free) > keepChunks {
		t.Fatalf("%d chunks kept for reuse, want 1..%d", len(q.free), keepChunks)
	}
	for _, c := range q.free {
		if len(c) != 0 || cap(c) != chunkSize {
			t.Fatalf("a kept chunk has length %d and capacity %d", len(c), cap(c))
		}
	}
}
