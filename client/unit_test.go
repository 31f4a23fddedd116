package client

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

func queues(spec string) []messageQueue {
	var out []messageQueue
	for _, s := range strings.Fields(spec) {
		b, id, _ := strings.Cut(s, "/")
		var n int
		fmt.Sscan(id, &n)
		out = append(out, messageQueue{b, n})
	}
	return out
}

func TestAllocateAveragely(t *testing.T) {
	eight := queues("b/4 a/0 a/1 a/2 a/3 b/0 b/1 b/2") // sorted by allocate
	for _, tc := range []struct {
		name string
		qs   []messageQueue
		ids  []string
		me   string
		want string
	}{
		{"alone takes all", eight, []string{"c1"}, "c1", "a/0 a/1 a/2 a/3 b/0 b/1 b/2 b/4"},
		{"8 over 3, first", eight, []string{"c3", "c1", "c2"}, "c1", "a/0 a/1 a/2"},
		{"8 over 3, second", eight, []string{"c3", "c1", "c2"}, "c2", "a/3 b/0 b/1"},
		{"8 over 3, third", eight, []string{"c3", "c1", "c2"}, "c3", "b/2 b/4"},
		{"2 over 3, third gets none", queues("a/0 a/1"), []string{"x", "y", "z"}, "z", ""},
		{"2 over 3, second", queues("a/0 a/1"), []string{"x", "y", "z"}, "y", "a/1"},
		{"not a member", eight, []string{"c1"}, "c9", ""},
		{"no queues", nil, []string{"c1"}, "c1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := allocate(tc.qs, tc.ids, tc.me)
			if want := queues(tc.want); !slices.Equal(got, want) {
				t.Fatalf("allocate = %v, want %v", got, want)
			}
		})
	}
	// Every queue goes to exactly one member, whatever the counts.
	for n := 0; n <= 12; n++ {
		for m := 1; m <= 5; m++ {
			var qs []messageQueue
			for i := range n {
				qs = append(qs, messageQueue{"b", i})
			}
			var ids []string
			for i := range m {
				ids = append(ids, fmt.Sprint("c", i))
			}
			seen := map[messageQueue]int{}
			for _, id := range ids {
				got := allocate(qs, ids, id)
				if len(got) > n/m+1 || len(got) < n/m && n >= m {
					t.Fatalf("%d queues over %d members: %s gets %d", n, m, id, len(got))
				}
				for _, q := range got {
					seen[q]++
				}
			}
			for _, q := range qs {
				if seen[q] != 1 {
					t.Fatalf("%d queues over %d members: %v allocated %d times", n, m, q, seen[q])
				}
			}
		}
	}
}

func TestOffsetTracker(t *testing.T) {
	var tr offsetTracker
	if _, ok := tr.committed(); ok {
		t.Fatal("committed before the start is known")
	}
	tr.start(10)
	if off, _ := tr.committed(); off != 10 {
		t.Fatalf("committed %d at start, want 10", off)
	}
	tr.pulled([]int64{10, 11, 13}, 14) // 12 was filtered out
	check := func(want int64) {
		t.Helper()
		if off, _ := tr.committed(); off != want {
			t.Fatalf("committed %d, want %d", off, want)
		}
	}
	check(10)
	tr.done(11)
	check(10)
	if tr.span() != 3 {
		t.Fatalf("span %d, want 3", tr.span())
	}
	tr.done(10)
	check(13)
	tr.done(99) // unknown: ignored
	tr.done(13)
	check(14)
	tr.pulled(nil, 20) // nothing found up to 20
	check(20)
	tr.pulled([]int64{20, 21}, 22)
	tr.pulled([]int64{21, 22}, 23) // 21 again: tracked once
	tr.done(22)
	tr.done(21)
	check(20)
	tr.done(20)
	check(23)
}

func TestPickQueue(t *testing.T) {
	qs := queues("a/0 a/1 b/0 b/1")
	var rr atomic.Uint32
	seen := map[messageQueue]int{}
	for range 8 {
		q, err := pickQueue(qs, "", &rr, "")
		if err != nil {
			t.Fatal(err)
		}
		seen[q]++
	}
	for _, q := range qs {
		if seen[q] != 2 {
			t.Fatalf("round robin: %v", seen)
		}
	}
	for range 8 {
		if q, _ := pickQueue(qs, "", &rr, "a"); q.Broker != "b" {
			t.Fatalf("avoiding broker a, got %v", q)
		}
	}
	if q, _ := pickQueue(queues("a/0 a/1"), "", &rr, "a"); q.Broker != "a" {
		t.Fatalf("no other broker: %v", q)
	}
	k1, _ := pickQueue(qs, "order-42", &rr, "")
	for range 5 {
		if q, _ := pickQueue(qs, "order-42", &rr, "a"); q != k1 {
			t.Fatalf("sharding key: %v then %v", k1, q)
		}
	}
	if _, err := pickQueue(nil, "", &rr, ""); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("no queue: %v", err)
	}
}

func TestTopicRoute(t *testing.T) {
	rd := remoting.RouteData{
		BrokerDatas: []remoting.BrokerData{
			{BrokerName: "b", BrokerAddrs: map[int64]string{0: "h2:1", 1: "h3:1"}},
			{BrokerName: "a", BrokerAddrs: map[int64]string{0: "h1:1"}},
			{BrokerName: "c", BrokerAddrs: map[int64]string{1: "h4:1"}}, // no master
		},
		QueueDatas: []remoting.QueueData{
			{BrokerName: "b", ReadQueueNums: 2, WriteQueueNums: 8, Perm: remoting.PermRead | remoting.PermWrite},
			{BrokerName: "a", ReadQueueNums: 1, WriteQueueNums: 1, Perm: remoting.PermRead},
			{BrokerName: "c", ReadQueueNums: 4, WriteQueueNums: 4, Perm: remoting.PermRead | remoting.PermWrite},
		},
	}
	r := newTopicRoute("t", "TBW102", rd, 4)
	if want := queues("b/0 b/1 b/2 b/3"); !slices.Equal(r.write, want) {
		t.Fatalf("write queues %v, want %v", r.write, want)
	}
	// A broker without a master is read from its replicas, never written.
	if want := queues("a/0 b/0 b/1 c/0 c/1 c/2 c/3"); !slices.Equal(r.read, want) {
		t.Fatalf("read queues %v, want %v", r.read, want)
	}
	if want := []string{"h1:1", "h2:1", "h3:1", "h4:1"}; !slices.Equal(r.all, want) || r.addrs["b"] != "h2:1" || r.addrs["c"] != "" {
		t.Fatalf("addresses %v %v", r.all, r.addrs)
	}
	if !slices.Equal(r.replicas["b"], []string{"h3:1"}) || !slices.Equal(r.replicas["c"], []string{"h4:1"}) {
		t.Fatalf("replicas %v", r.replicas)
	}
}

func TestMessageValidation(t *testing.T) {
	for name, m := range map[string]*Message{
		"nil":            nil,
		"no topic":       {},
		"bad topic":      {Topic: "a/b"},
		"long topic":     {Topic: strings.Repeat("t", 128)},
		"delay level":    {Topic: "t", DelayLevel: 19},
		"both delays":    {Topic: "t", DelayLevel: 1, DeliverAt: time.Now().Add(time.Minute)},
		"key with space": {Topic: "t", Keys: []string{"a b"}},
		"property":       {Topic: "t", Properties: map[string]string{"k": "v\x02"}},
		"tag":            {Topic: "t", Tag: "x\x01"},
	} {
		if err := m.validate(); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: %v, want ErrInvalidMessage", name, err)
		}
	}
	if err := (&Message{Topic: "%RETRY%g-1|x", DelayLevel: 18}).validate(); err != nil {
		t.Fatal(err)
	}
}

func TestWireProperties(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	m := &Message{Topic: "t", Tag: "42/telemetry", Keys: []string{"k1", "k2"}, Properties: map[string]string{"a": "1"}, DeliverAt: at}
	p := m.wireProperties("ID1")
	want := map[string]string{"a": "1", "TAGS": "42/telemetry", "KEYS": "k1 k2", "UNIQ_KEY": "ID1", "__STARTDELIVERTIME": "1700000000123"}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("properties %v, want %v", p, want)
	}
	enc := remoting.EncodeProperties(p)
	if enc != "KEYS\x01k1 k2\x02TAGS\x0142/telemetry\x02UNIQ_KEY\x01ID1\x02__STARTDELIVERTIME\x011700000000123\x02a\x011\x02" {
		t.Fatalf("encoded %q", enc)
	}
	if got := remoting.DecodeProperties(enc); !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %v", got)
	}
	if got := remoting.DecodeProperties("x\x02\x01v\x02k\x01v"); !reflect.DeepEqual(got, map[string]string{"k": "v"}) {
		t.Fatalf("lenient decode %v", got)
	}
	if p := (&Message{Topic: "t", DelayLevel: 3, Properties: map[string]string{"UNIQ_KEY": "mine"}}).wireProperties("x"); p["DELAY"] != "3" || p["UNIQ_KEY"] != "mine" {
		t.Fatalf("delay and user id: %v", p)
	}
	g := newIDGen()
	a, b := g.next(), g.next()
	if len(a) != 32 || a == b || a[:16] != b[:16] || strings.ToUpper(a) != a {
		t.Fatalf("ids %s %s", a, b)
	}
	// A send encodes them without a map: the same bytes, the same id.
	for _, m := range []*Message{m, {Topic: "t"}, {Topic: "t", DelayLevel: 3, Properties: map[string]string{"UNIQ_KEY": "mine", "TAGS": "user's", "z": "", "B": "b"}},
		{Topic: "t", Tag: "x", Properties: map[string]string{"UNIQ_KEY": "", "TAGS": "user's"}}} {
		uniq := g.nextID()
		wp := m.wireProperties(upperHex(uniq[:]))
		props, id := m.encodeWireProperties(uniq)
		if want := remoting.EncodeProperties(wp); props != want || id != wp["UNIQ_KEY"] {
			t.Fatalf("%+v: encoded %q id %q; want %q id %q", m, props, id, want, wp["UNIQ_KEY"])
		}
	}
}

func TestOptions(t *testing.T) {
	for name, err := range map[string]error{
		"consumer option":  func() error { _, err := NewProducer(WithConcurrency(3)); return err }(),
		"producer option":  func() error { _, err := NewPushConsumer("g", WithRetries(3)); return err }(),
		"bad value":        func() error { _, err := NewProducer(WithSendTimeout(0)); return err }(),
		"bad batch":        func() error { _, err := NewPushConsumer("g", WithPullBatch(5000)); return err }(),
		"bad group":        func() error { _, err := NewPushConsumer("a/b"); return err }(),
		"ordered producer": func() error { _, err := NewProducer(WithOrdered()); return err }(),
		"ordered broadcast": func() error {
			_, err := NewPushConsumer("g", WithOrdered(), WithBroadcasting())
			return err
		}(),
		"broadcast puller": func() error { _, err := NewPullConsumer("g", WithBroadcasting()); return err }(),
		"bad pull group":   func() error { _, err := NewPullConsumer("%x"); return err }(),
	} {
		if !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
	c, err := NewPushConsumer("g")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); !errors.Is(err, ErrNoSubscription) {
		t.Fatalf("start without subscription: %v", err)
	}
	if err := c.Subscribe("%RETRY%x", "*", func(context.Context, *MessageExt) error { return nil }); !errors.Is(err, ErrInvalidSubscription) {
		t.Fatalf("reserved topic: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("t", "*", func(context.Context, *MessageExt) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
	if err := c.Start(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after close: %v", err)
	}
	noClientGoroutines(t)
}

func TestRetryable(t *testing.T) {
	for err, want := range map[error]bool{
		&remoting.Error{Code: remoting.SystemBusy}:     true,
		&remoting.Error{Code: remoting.TopicNotExist}:  true,
		&remoting.Error{Code: remoting.MessageIllegal}: false,
		&remoting.Error{Code: remoting.NoPermission}:   false, // Ferry's refusal of credentials or topic: the same next time
		fmt.Errorf("x: %w", remoting.ErrConnClosed):    true,
		fmt.Errorf("x: %w", ErrClosed):                 false,
		fmt.Errorf("x: %w", errors.New("refused")):     true,
	} {
		if retryable(err) != want {
			t.Errorf("retryable(%v) = %v", err, !want)
		}
	}
}

// storedMessage is a record in the stored-message layout, as the broker
// writes it.
type storedMessage struct {
	topic          string
	queueID        uint32
	queueOffset    uint64
	logOffset      uint64
	sysFlag        uint32
	born, stored   int64 // ms
	storeHost      [8]byte
	reconsumeTimes uint32
	body           []byte
	props          string
	magic          uint32
}

func (s storedMessage) append(dst []byte) []byte {
	be := binary.BigEndian
	magic := s.magic
	if magic == 0 {
		magic = magicV1
	}
	tlen := 1
	if magic == magicV2 {
		tlen = 2
	}
	size := minStored - 1 - 2 + len(s.body) + tlen + len(s.topic) + 2 + len(s.props)
	dst = be.AppendUint32(dst, uint32(size))
	dst = be.AppendUint32(dst, magic)
	dst = be.AppendUint32(dst, crc32.ChecksumIEEE(s.body))
	dst = be.AppendUint32(dst, s.queueID)
	dst = be.AppendUint32(dst, 7) // flag
	dst = be.AppendUint64(dst, s.queueOffset)
	dst = be.AppendUint64(dst, s.logOffset)
	dst = be.AppendUint32(dst, s.sysFlag)
	dst = be.AppendUint64(dst, uint64(s.born))
	dst = append(dst, 10, 0, 0, 1, 0, 0, 0x27, 0x10)
	dst = be.AppendUint64(dst, uint64(s.stored))
	dst = append(dst, s.storeHost[:]...)
	dst = be.AppendUint32(dst, s.reconsumeTimes)
	dst = be.AppendUint64(dst, 0)
	dst = be.AppendUint32(dst, uint32(len(s.body)))
	dst = append(dst, s.body...)
	if magic == magicV2 {
		dst = be.AppendUint16(dst, uint16(len(s.topic)))
	} else {
		dst = append(dst, byte(len(s.topic)))
	}
	dst = append(dst, s.topic...)
	dst = be.AppendUint16(dst, uint16(len(s.props)))
	return append(dst, s.props...)
}

func TestDecodeMessages(t *testing.T) {
	host := [8]byte{127, 0, 0, 1, 0, 0, 0x2a, 0x9f} // 127.0.0.1:10911
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write([]byte("inflated"))
	zw.Close()
	body := storedMessage{topic: "t", queueID: 3, queueOffset: 5, logOffset: 1234, born: 1000, stored: 2000, storeHost: host,
		body: []byte("hello"), props: "TAGS\x01a\x02KEYS\x01k1 k2\x02UNIQ_KEY\x01U1\x02x\x01y\x02"}.append(nil)
	body = storedMessage{topic: "%RETRY%g", queueOffset: 9, logOffset: 99, storeHost: host, reconsumeTimes: 2, magic: magicV2,
		body: []byte("again"), props: "RETRY_TOPIC\x01orig\x02"}.append(body)
	body = storedMessage{topic: "t", logOffset: 7, storeHost: host, sysFlag: sysCompressed, body: z.Bytes()}.append(body)
	msgs, err := decodeMessages(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.Topic != "t" || m.Tag != "a" || !slices.Equal(m.Keys, []string{"k1", "k2"}) || m.ID != "U1" ||
		!reflect.DeepEqual(m.Properties, map[string]string{"x": "y"}) || string(m.Body) != "hello" ||
		m.QueueID != 3 || m.QueueOffset != 5 || m.LogOffset != 1234 || m.BornTime.UnixMilli() != 1000 ||
		m.StoreTime.UnixMilli() != 2000 || m.StoreHost != "127.0.0.1:10911" {
		t.Fatalf("decoded %+v", m)
	}
	if m := msgs[1]; m.Topic != "orig" || m.ReconsumeTimes != 2 || string(m.Body) != "again" || m.ID != "7F00000100002A9F0000000000000063" {
		t.Fatalf("retried message %+v", m)
	}
	if m := msgs[2]; string(m.Body) != "inflated" {
		t.Fatalf("compressed body %q", m.Body)
	}
	// Every cut but at a record's end fails cleanly.
	ends := map[int]bool{0: true}
	for off := 0; off < len(body); {
		off += int(binary.BigEndian.Uint32(body[off:]))
		ends[off] = true
	}
	for i := range len(body) {
		if _, err := decodeMessages(body[:i]); (err == nil) != ends[i] {
			t.Fatalf("cut at %d: %v", i, err)
		}
	}
	const bodyLenAt = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8
	for name, corrupt := range map[string]func([]byte){
		"body length":  func(b []byte) { b[bodyLenAt] ^= 0x80 },
		"body":         func(b []byte) { b[bodyLenAt+4] ^= 1 },
		"size":         func(b []byte) { b[3]-- },
		"magic":        func(b []byte) { b[4] = 0 },
		"topic length": func(b []byte) { b[bodyLenAt+4+5] = 200 },
	} {
		bad := bytes.Clone(body)
		corrupt(bad)
		if _, err := decodeMessages(bad); !errors.Is(err, errMalformed) {
			t.Errorf("corrupted %s: %v", name, err)
		}
	}
}

// FuzzDecodeMessages: any pull body decodes or fails cleanly, and what
// decodes stays within what was read.
func FuzzDecodeMessages(f *testing.F) {
	host := [8]byte{127, 0, 0, 1, 0, 0, 0x2a, 0x9f}
	f.Add(storedMessage{topic: "t", body: []byte("x"), props: "TAGS\x01a\x02", storeHost: host}.append(nil))
	f.Add(storedMessage{topic: "%RETRY%g", magic: magicV2, props: "RETRY_TOPIC\x01t\x02"}.append(
		storedMessage{topic: "t"}.append(nil)))
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := decodeMessages(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v is not errMalformed", err)
			}
			return
		}
		if len(msgs)*minStored > len(b) {
			t.Fatalf("%d messages from %d bytes", len(msgs), len(b))
		}
		for _, m := range msgs {
			if m.Topic == "" || m.QueueOffset < 0 || m.LogOffset < 0 {
				t.Fatalf("decoded %+v", m)
			}
		}
	})
}

// BenchmarkDecodeMessages decodes a pull response of 32 messages of 128
// bytes, as the SDK's consumers do, per message.
func BenchmarkDecodeMessages(b *testing.B) {
	host := [8]byte{127, 0, 0, 1, 0, 0, 0x2a, 0x9f}
	var resp []byte
	for i := range 32 {
		resp = storedMessage{topic: "bench", queueID: 1, queueOffset: uint64(i), logOffset: uint64(1000 * i), storeHost: host,
			body: make([]byte, 128), props: "UNIQ_KEY\x017F0000010001B4AAC6A1\x02"}.append(resp)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i += 32 {
		if _, err := decodeMessages(resp); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSharedBodiesStayApart: bodies of a response decoded into one copy
// cannot grow into the next message's bytes, and a change to one leaves
// the others and the strings alone.
func TestSharedBodiesStayApart(t *testing.T) {
	host := [8]byte{127, 0, 0, 1, 0, 0, 0x2a, 0x9f}
	var resp []byte
	for i := range 3 {
		resp = storedMessage{topic: "t", logOffset: uint64(i), storeHost: host, body: []byte{'a' + byte(i), 'a' + byte(i)},
			props: "TAGS\x01tag\x02"}.append(resp)
	}
	msgs, err := decodeMessages(resp)
	if err != nil {
		t.Fatal(err)
	}
	msgs[0].Body = append(msgs[0].Body, 'x', 'x', 'x', 'x')
	msgs[1].Body[0] = 'z'
	if string(msgs[0].Body) != "aaxxxx" || string(msgs[1].Body) != "zb" || string(msgs[2].Body) != "cc" || msgs[2].Tag != "tag" || msgs[0].Topic != "t" {
		t.Fatalf("bodies %q %q %q, tag %q, topic %q", msgs[0].Body, msgs[1].Body, msgs[2].Body, msgs[2].Tag, msgs[0].Topic)
	}
	resp[len(resp)-3] = 'X' // the caller's response is not the messages' memory
	if msgs[2].Tag != "tag" {
		t.Fatalf("tag %q changed with the response", msgs[2].Tag)
	}
}

// msClock's text is the Unix millisecond of the call, and a call in the
// same millisecond shares the string made for it.
func TestMsClock(t *testing.T) {
	var c msClock
	before := time.Now().UnixMilli()
	got := c.now()
	after := time.Now().UnixMilli()
	if ms, err := strconv.ParseInt(got, 10, 64); err != nil || ms < before || ms > after {
		t.Fatalf("now() = %q, want a Unix millisecond in [%d, %d]", got, before, after)
	}
	c.last.Store(&msText{ms: 1 << 60, text: "stale"})
	if got := c.now(); got == "stale" {
		t.Fatal("now() kept the text of another millisecond")
	}
}
