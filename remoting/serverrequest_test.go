package remoting

import (
	"context"
	"net"
	"testing"
	"time"
)

// A request the server sends on a client's connection reaches the
// client's handler; a two-way one is answered, with the handler's
// response or REQUEST_CODE_NOT_SUPPORTED, under the request's opaque.
func TestClientServesServerRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := Dial(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan *Command, 4)
	c.HandleRequests(func(req *Command) *Command {
		got <- req
		if req.Code == 307 {
			resp := req.Response(Success, "")
			resp.Body = []byte("running")
			return resp
		}
		return nil
	})
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	oneway := NewRequest(NotifyConsumerIdsChanged, Pairs("consumerGroup", "g"), nil)
	oneway.Flag, oneway.Opaque = FlagOneway, 1
	answered := NewRequest(307, nil, nil)
	answered.Opaque = 2
	unknown := NewRequest(39, nil, nil)
	unknown.Opaque = 3
	var frames []byte
	for _, cmd := range []*Command{oneway, answered, unknown} {
		if frames, err = AppendFrame(frames, cmd); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nc.Write(frames); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int16{NotifyConsumerIdsChanged, 307, 39} {
		select {
		case req := <-got:
			if req.Code != want {
				t.Fatalf("handler got code %d, want %d", req.Code, want)
			}
			if want == NotifyConsumerIdsChanged && req.Ext("consumerGroup") != "g" {
				t.Fatalf("notification's group %q", req.Ext("consumerGroup"))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("handler never got code %d", want)
		}
	}
	fr := newFrameReader(nc, false)
	for _, want := range []struct {
		opaque int32
		code   int16
		body   string
	}{{2, Success, "running"}, {3, RequestCodeNotSupported, ""}} {
		resp, err := fr.readCommand(MaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		if !resp.IsResponse() || resp.Opaque != want.opaque || resp.Code != want.code || string(resp.Body) != want.body {
			t.Fatalf("answer %v, want opaque %d code %d body %q", resp, want.opaque, want.code, want.body)
		}
	}
}
