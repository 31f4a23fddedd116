package native

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkPull is PULL_MESSAGE of 32 messages of 128 bytes from a queue
// of 4096, from 16 parallel callers on one connection, half of them with a
// tag filter that keeps every other message: the pull's read, filter and
// response building, broker and caller in this process.
func BenchmarkPull(b *testing.B) {
	t := &testing.T{}
	_, c := start(t)
	body := make([]byte, 128)
	const n = 4096
	for i := range n {
		tag := "a"
		if i%2 == 1 {
			tag = "b"
		}
		resp, err := c.Invoke(context.Background(), sendV2("pull", tag, body, 0))
		if err != nil || resp.Code != remoting.Success {
			b.Fatal(err, resp)
		}
	}
	maxOffset := func() string {
		resp, err := c.Invoke(context.Background(), remoting.NewRequest(remoting.GetMaxOffset, remoting.Pairs("topic", "pull", "queueId", "0"), nil))
		if err != nil {
			b.Fatal(err)
		}
		return resp.Ext("offset")
	}
	deadline := time.Now().Add(10 * time.Second)
	for maxOffset() != strconv.Itoa(n) { // the index follows the log
		if time.Now().After(deadline) {
			b.Fatal("the messages were never indexed")
		}
		time.Sleep(time.Millisecond)
	}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			sub := "*"
			if i%2 == 0 {
				sub = "a"
			}
			off := (i * 32) % (n - 64)
			req := remoting.NewRequest(remoting.PullMessage, remoting.Pairs(
				"consumerGroup", "g", "topic", "pull", "queueId", "0", "queueOffset", strconv.FormatInt(off, 10),
				"maxMsgNums", "32", "sysFlag", "0", "subscription", sub, "suspendTimeoutMillis", "0",
			), nil)
			req.Serialization = remoting.RocketMQ
			resp, err := c.Invoke(context.Background(), req)
			if err != nil || resp.Code != remoting.Success || len(resp.Body) == 0 {
				b.Fatal(err, resp)
			}
		}
	})
}
