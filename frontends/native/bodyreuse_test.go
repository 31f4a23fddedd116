package native

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/core/route"
	"github.com/ferrymq/ferry/remoting"
)

// Sends of 4 KiB bodies, many in flight on one connection: the server
// reuses the memory of a stored send's body for later requests, except a
// body that a live subscription was handed, which must read the same
// long after; the store's copies read back intact.
func TestSendBodiesReusedOnlyWhenNotHeld(t *testing.T) {
	b, c := start(t)
	var mu sync.Mutex
	var held []*core.Message
	sub, err := b.Subscribe("held", route.Filter{}, func(m *core.Message) {
		mu.Lock()
		held = append(held, m)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const n = 200
	body := func(i int) []byte { return bytes.Repeat([]byte{byte('A' + i%50)}, 4096) }
	var wg sync.WaitGroup
	for i := range n {
		topic := "free"
		if i%4 == 0 {
			topic = "held"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := sendV2(topic, strconv.Itoa(i), body(i), 0)
			resp, err := c.Invoke(context.Background(), req)
			if err != nil || resp.Code != remoting.Success {
				t.Errorf("send %d: %v %v", i, err, resp)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(held) != n/4 {
		t.Fatalf("the subscription was handed %d messages, want %d", len(held), n/4)
	}
	for _, m := range held {
		i, _ := strconv.Atoi(m.Subject)
		if !bytes.Equal(m.Body, body(i)) {
			t.Fatalf("a held message's body changed after its send: %q…, want %q…", m.Body[:8], body(i)[:8])
		}
	}
	var stored []core.Message
	if !waitFor(func() bool {
		res, err := b.Read(context.Background(), "free", 0, int64(len(stored)), core.ReadOptions{Max: n})
		if err == nil {
			stored = append(stored, res.Messages...)
		}
		return len(stored) >= n-n/4
	}) {
		t.Fatalf("read %d stored messages, want %d", len(stored), n-n/4)
	}
	for _, m := range stored {
		i, _ := strconv.Atoi(m.Subject)
		if !bytes.Equal(m.Body, body(i)) {
			t.Fatalf("stored message %d reads %q…, want %q…", i, m.Body[:8], body(i)[:8])
		}
	}
}
