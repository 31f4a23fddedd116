package native

import (
	"context"
	"testing"

	"github.com/ferrymq/ferry/remoting"
)

// BenchmarkSendV2 is SEND_MESSAGE_V2 of 128-byte bodies from 16 parallel
// callers on one connection, broker and caller in this process.
func BenchmarkSendV2(b *testing.B) {
	t := &testing.T{}
	_, c := start(t)
	body := make([]byte, 128)
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := sendV2("bench", "tag", body, 0)
			req.Serialization = remoting.RocketMQ // as the SDK sends
			resp, err := c.Invoke(context.Background(), req)
			if err != nil || resp.Code != remoting.Success {
				b.Fatal(err, resp)
			}
		}
	})
}
