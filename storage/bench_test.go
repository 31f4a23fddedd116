package storage

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
)

// Benchmarks of the store on the machine's disk. Run with
//
//	go test -run '^$' -bench . -benchtime 2000000x ./storage/
//
// and compare the byte rates with the disk's own (bench/run.sh does both).

func benchOptions(mode FlushMode) Options {
	return Options{
		SegmentSize:  256 << 20,
		FlushMode:    mode,
		RetentionAge: -1, RetentionDiskRatio: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// openBench opens a store for b in a temporary directory; it is closed
// when b ends.
func openBench(b *testing.B, mode FlushMode) *Store {
	b.Helper()
	s, err := Open(b.TempDir(), benchOptions(mode))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{128, 4096} {
		b.Run(fmt.Sprintf("async/body=%d", size), func(b *testing.B) {
			s := openBench(b, FlushAsync)
			m := &Message{Topic: "bench", Subject: "dev/1/telemetry", Body: make([]byte, size)}
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.QueueID = i & 7
				if err := s.Append(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkAppendSync64 has 64 goroutines appending in sync mode: each
// append waits for its fsync, which group commit shares among them.
func BenchmarkAppendSync64(b *testing.B) {
	s := openBench(b, FlushSync)
	ctx := context.Background()
	b.SetBytes(128)
	b.SetParallelism(64 / max(1, runtimeProcs()))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		m := &Message{Topic: "bench", Subject: "dev/1/telemetry", Body: make([]byte, 128)}
		for pb.Next() {
			if err := s.Append(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	st := s.Stats()
	b.ReportMetric(float64(b.N)/float64(st.Flushes), "msgs/fsync")
	b.ReportMetric(float64(st.FlushTime.Microseconds())/float64(st.Flushes), "µs/fsync")
}

// BenchmarkReadQueue reads one queue from its start, 32 messages a read.
func BenchmarkReadQueue(b *testing.B) {
	s := openBench(b, FlushAsync)
	ctx := context.Background()
	batch := make([]*Message, 64)
	for i := range batch {
		batch[i] = &Message{Topic: "bench", Subject: "dev/1/telemetry", Body: make([]byte, 128)}
	}
	for n := 0; n < b.N; n += len(batch) {
		if _, err := s.AppendBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	waitIndexed(b, s)
	b.SetBytes(128)
	b.ReportAllocs()
	b.ResetTimer()
	var off int64
	for read := 0; read < b.N; {
		res, err := s.Read("bench", 0, off, ReadOptions{MaxCount: 32})
		if err != nil {
			b.Fatal(err)
		}
		read += len(res.Messages)
		off = res.Next
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkAppendAsync64 has 64 goroutines appending in async mode: each
// append waits for the committer's write to the file, which one pwrite
// shares among all the appends buffered meanwhile (group commit).
func BenchmarkAppendAsync64(b *testing.B) {
	for _, size := range []int{128, 4096} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			s := openBench(b, FlushAsync)
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.SetParallelism(64 / max(1, runtimeProcs()))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				m := &Message{Topic: "bench", Subject: "dev/1/telemetry", Body: make([]byte, size)}
				for pb.Next() {
					if err := s.Append(ctx, m); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(b.N)/float64(max(1, s.Stats().Writes)), "msgs/write")
		})
	}
}

// BenchmarkAppendPipelined appends from one goroutine as a connection with
// many messages in flight does: AppendBatchNoWait for each message and one
// WaitDurable for every 64, so the appender never idles while the
// committer writes.
func BenchmarkAppendPipelined(b *testing.B) {
	for _, size := range []int{128, 4096} {
		b.Run(fmt.Sprintf("async/body=%d", size), func(b *testing.B) {
			s := openBench(b, FlushAsync)
			m := []*Message{{Topic: "bench", Subject: "dev/1/telemetry", Body: make([]byte, size)}}
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m[0].QueueID = i & 7
				_, end, err := s.AppendBatchNoWait(m)
				if err != nil {
					b.Fatal(err)
				}
				if i%64 == 63 || i == b.N-1 {
					if err := s.WaitDurable(ctx, end); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
