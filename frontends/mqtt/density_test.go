package mqtt

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"
)

// TestIdleConnectionMemory opens FERRY_MQTT_DENSITY idle connections (a
// CONNECT each, keep alive 0) to a front-end in this process and logs what
// each costs: heap, goroutine stacks and goroutines, read with
// runtime.MemStats; with FERRY_MQTT_DENSITY_HEAP=file it also writes a heap
// profile of the connections' allocations. A measurement, not a timed
// test (cmd/ferry's TestMQTTIdleConnectionDensity measures the binary's
// resident set beside Mosquitto's):
//
//	FERRY_MQTT_DENSITY=10000 go test -run TestIdleConnectionMemory -v ./frontends/mqtt/
func TestIdleConnectionMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FERRY_MQTT_DENSITY"))
	if n <= 0 {
		t.Skip("set FERRY_MQTT_DENSITY to the number of idle connections to open")
	}
	f := startFerry(t, t.TempDir(), Config{})
	runtime.MemProfileRate = 4096
	before, gBefore := memNow()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%16))}}
		c, err := d.Dial("tcp", f.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		id := fmt.Sprintf("idle-%d", i)
		pkt := append([]byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, byte(len(id))}, id...)
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
		var ack [4]byte
		if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("connection %d: CONNACK % x: %v", i, ack, err)
		}
	}
	time.Sleep(2 * time.Second)
	after, gAfter := memNow()
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) / 1024 }
	t.Logf("%d idle connections, per connection: heap in use %.1f KiB, stacks %.1f KiB, %.2f goroutines; both sides of each connection are in this process",
		n, per(after.HeapInuse, before.HeapInuse), per(after.StackInuse, before.StackInuse), float64(gAfter-gBefore)/float64(n))
	if path := os.Getenv("FERRY_MQTT_DENSITY_HEAP"); path != "" {
		out, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func memNow() (runtime.MemStats, int) {
	for range 4 { // each cycle halves the stacks used below a quarter
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m, runtime.NumGoroutine()
}
