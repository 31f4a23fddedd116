package remoting

import (
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
			req := NewRequest(SendMessageV2, map[string]string{"b": "t"}, body)
			req.Serialization = benchSer
			if _, err := c.Invoke(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var benchSer = JSON // what the SDK sends
