package mqtt

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// acker sends the PUBACKs of QoS 1 publishes once they are durable under
// the flush policy: written to the log's file (async flush) or on disk
// (sync). A connection's reader stores a publish without waiting and reads
// on, so no goroutine is parked per publish and the publishes of every
// connection share one write (and fsync); the acker waits for the write
// that covers what is queued and acknowledges all of it, in order per
// connection.
type acker struct {
	s    *Server
	mu   sync.Mutex
	q    []pendingAck
	kick chan struct{}
}

type pendingAck struct {
	cl   *mochi.Client
	pid  uint16
	end  int64 // the log offset the message's record ends at
	read int64 // when the PUBLISH was read, unix ns (ferry_mqtt_publish_duration_seconds)
}

func newAcker(s *Server) *acker { return &acker{s: s, kick: make(chan struct{}, 1)} }

func (a *acker) add(cl *mochi.Client, pid uint16, end int64, read time.Time) {
	a.mu.Lock()
	a.q = append(a.q, pendingAck{cl, pid, end, read.UnixNano()})
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *acker) run(ctx context.Context) {
	defer a.s.wg.Done()
	var buf bytes.Buffer
	// The queue and the batch being sent trade places: adders append to
	// one while the acker sends the other, and neither is allocated again
	// once grown to the load.
	var spare []pendingAck
	for {
		select {
		case <-a.kick:
		case <-ctx.Done():
			return // unacknowledged publishes are sent again by their clients
		}
		for {
			a.mu.Lock()
			batch := a.q
			if len(batch) > 0 {
				a.q = spare // adders must never write into the batch being sent
			}
			a.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			var end int64
			for _, p := range batch {
				end = max(end, p.end)
			}
			err := a.s.core.WaitDurable(ctx, end)
			if ctx.Err() != nil {
				return
			}
			// The write that made these durable (often the acker's own)
			// readied the dispatcher, which indexes them for the
			// subscribers' feeds: let it and the feeds run before this
			// goroutine spends a write per connection on acknowledgements.
			runtime.Gosched()
			for i := 0; i < len(batch); {
				cl := batch[i].cl
				buf.Reset()
				j := i
				for ; j < len(batch) && batch[j].cl == cl; j++ {
					ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: batch[j].pid,
						ProtocolVersion: cl.Properties.ProtocolVersion}
					if err != nil { // stored, not synced: never a success [MQTT-4.3.2-2]
						ack.ReasonCode = packets.ErrUnspecifiedError.Code
					}
					_ = ack.PubackEncode(&buf)
				}
				if err != nil && cl.Properties.ProtocolVersion < 5 {
					a.s.log.Warn("mqtt: a stored publish could not be synced; closing the connection", "client", cl.ID, "err", err)
					cl.Stop(err) // 3.1.1 has no negative acknowledgement
				} else {
					_ = writeTo(cl, buf.Bytes())
				}
				now := time.Now().UnixNano()
				for _, p := range batch[i:j] {
					a.s.publishLatency.Observe(float64(now-p.read) / 1e9)
				}
				i = j
			}
			clear(batch) // the clients, for the collector
			spare = batch[:0]
		}
	}
}

// writeTo writes encoded packets to the client, under the client's lock so
// that they do not interleave with the engine's own packets. It does not
// wait for the client: what its socket does not take at once is queued for
// the connection's writer (sendConn).
func writeTo(cl *mochi.Client, b []byte) error {
	if cl.Closed() || cl.Net.Conn == nil {
		return mochi.ErrConnectionClosed
	}
	cl.Lock()
	defer cl.Unlock()
	_, err := cl.Net.Conn.Write(b)
	if fl, ok := cl.Net.Conn.(interface{ Flush() error }); ok && err == nil {
		err = fl.Flush()
	}
	return err
}
