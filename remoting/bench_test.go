package remoting

import (
	"bufio"
	"bytes"
	"context"
	"testing"
)

// BenchmarkInvoke is one request/response round trip on loopback, from
// parallel callers on one connection.
func BenchmarkInvoke(b *testing.B) {
	addr := startServer(b, HandlerFunc(echo), ServerOptions{})
	c, err := Dial(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	body := make([]byte, 128)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := NewRequest(SendMessageV2, Pairs("b", "t"), body)
			req.Serialization = benchSer
			if _, err := c.Invoke(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var benchSer = JSON // what the SDK sends

// benchFrames is one SEND_MESSAGE_V2 frame of a 128-byte body (binary
// headers, as the SDK sends) and a stream of 512 of them.
func benchFrames(b *testing.B) (frame, stream []byte) {
	req := NewRequest(SendMessageV2, Pairs("a", "producer", "b", "topic", "c", "TBW102", "d", "8", "e", "0", "f", "0", "g", "1700000000000"), make([]byte, 128))
	req.Serialization = RocketMQ
	frame, err := AppendFrame(nil, req)
	if err != nil {
		b.Fatal(err)
	}
	return frame, bytes.Repeat(frame, 512)
}

// BenchmarkReadCommand decodes pipelined SEND_MESSAGE_V2 frames of
// 128-byte bodies (binary headers, as the SDK sends) from a buffered stream.
func BenchmarkReadCommand(b *testing.B) {
	frame, stream := benchFrames(b)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	var src bytes.Reader
	r := bufio.NewReaderSize(&src, 64<<10)
	for i := 0; i < b.N; i++ {
		if i%512 == 0 {
			src.Reset(stream)
			r.Reset(&src)
		}
		if _, err := ReadCommand(r, MaxFrame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFrameReader is BenchmarkReadCommand through a connection's
// frame reader (the server's and the client's): frames whole in its
// buffer are decoded where they lie.
func BenchmarkFrameReader(b *testing.B) {
	frame, stream := benchFrames(b)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	var src bytes.Reader
	fr := newFrameReader(&src, true)
	defer fr.release()
	for i := 0; i < b.N; i++ {
		if i%512 == 0 {
			src.Reset(stream)
		}
		if _, err := fr.readCommand(MaxFrame); err != nil {
			b.Fatal(err)
		}
	}
}
