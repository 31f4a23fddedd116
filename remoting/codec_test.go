package remoting

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var samples = []*Command{
	{Code: SendMessageV2, Language: "JAVA", Version: 399, Opaque: 7, Fields: []Field{{"a", "producerGroup"}, {"b", "TopicTest"}, {"e", "3"}}, Body: []byte("hello")},
	{Code: Success, Language: "GO", Version: Version, Opaque: 7, Flag: FlagResponse, Remark: "ok", Fields: []Field{{"msgId", "00ff"}}},
	{Code: HeartBeat, Language: "GO", Opaque: -3, Flag: FlagOneway},
	{Code: PullMessage, Language: "GO", Opaque: 1 << 30, Body: bytes.Repeat([]byte{0}, 1000)},
}

// Ext fields keep their order through the binary header; the JSON header
// carries them as an object sorted by name. A repeated name is one field
// whose last value counts, in both.
func TestFieldsRoundTrip(t *testing.T) {
	fields := []Field{{"e", "3"}, {"a", "first"}, {"b", "TopicTest"}, {"x", ""}, {"a", "producerGroup"}}
	want := map[Serialization][]Field{
		RocketMQ: fields,
		JSON:     {{"a", "producerGroup"}, {"b", "TopicTest"}, {"e", "3"}, {"x", ""}},
	}
	for _, ser := range []Serialization{JSON, RocketMQ} {
		c := NewRequest(SendMessageV2, slices.Clone(fields), []byte("hello"))
		c.Serialization = ser
		frame, err := AppendFrame(nil, c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeFrame(frame[4:])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Fields, want[ser]) || string(got.Body) != "hello" {
			t.Fatalf("serialization %d: ext %v body %q; want %v", ser, got.Fields, got.Body, want[ser])
		}
		if v, ok := got.Lookup("a"); !ok || v != "producerGroup" {
			t.Fatalf("serialization %d: Lookup(a) = %q, %v; want the last value", ser, v, ok)
		}
		if n, err := got.ExtInt("e"); err != nil || n != 3 {
			t.Fatalf("ExtInt(e) = %d, %v", n, err)
		}
	}
}

// checkJSONHeader fails t unless c's JSON header is the bytes
// encoding/json writes for c with its ext fields in a map: a jsonHeader,
// what decodeJSONHeader reads.
func checkJSONHeader(t *testing.T, c *Command) {
	t.Helper()
	m := map[string]string{}
	for _, f := range c.Fields {
		m[f.Name] = f.Value
	}
	want, err := json.Marshal(jsonHeader{c.Code, c.Language, c.Version, c.Opaque, c.Flag, c.Remark, m})
	if err != nil {
		t.Fatal(err)
	}
	if got := appendJSONHeader(nil, c); !bytes.Equal(got, want) {
		t.Fatalf("JSON header\n%s\nencoding/json with a map:\n%s", got, want)
	}
}

func TestJSONHeaderAsMap(t *testing.T) {
	for _, c := range append(samples,
		&Command{Code: -1, Language: "<GO>", Version: -399, Opaque: -7, Flag: 3, Remark: "a\"b\\c\n\u2029\x7f",
			Fields: []Field{{"z", "<&>"}, {"a", "\"\x00\x1f\b\f\r\t\u2028é\xff"}, {"m", ""}, {"a", "last"}, {"\xe2\x80", "cut"}}},
		&Command{Fields: []Field{}},
	) {
		checkJSONHeader(t, c)
	}
}

// FuzzJSONString: any string is escaped as encoding/json escapes it.
func FuzzJSONString(f *testing.F) {
	f.Add("plain")
	f.Add("<a href=\"x\">&amp;</a>\\\n\t\x00\x7f")
	f.Add("\u2028\u2029\xff\xe2\x80é😀")
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q escaped as %s, encoding/json: %s", s, got, want)
		}
	})
}

func TestFieldMethods(t *testing.T) {
	c := NewRequest(SendMessageV2, Pairs("b", "1", "a", "2", "b", "3"), nil)
	if v, ok := c.Lookup("b"); !ok || v != "3" || c.Ext("a") != "2" || c.Ext("none") != "" {
		t.Fatalf("Lookup(b) = %q, %v; Ext(a) = %q", v, ok, c.Ext("a"))
	}
	if _, ok := c.Lookup("none"); ok {
		t.Fatal("Lookup found a field that is not there")
	}
	c.Set("b", "4") // the last occurrence, the one that counts
	c.Set("c", "5")
	if want := Pairs("b", "1", "a", "2", "b", "4", "c", "5"); !slices.Equal(c.Fields, want) {
		t.Fatalf("after Set: %v, want %v", c.Fields, want)
	}
	if want := Pairs("a", "2", "b", "4", "c", "5"); !slices.Equal(c.SortedFields(), want) {
		t.Fatalf("SortedFields: %v, want %v", c.SortedFields(), want)
	}
	c.Del("b")
	c.Del("none")
	if want := Pairs("a", "2", "c", "5"); !slices.Equal(c.Fields, want) {
		t.Fatalf("after Del: %v, want %v", c.Fields, want)
	}
	shared := Pairs("a", "1")
	d := NewRequest(SendMessageV2, shared[:1:1], nil)
	d.Del("none")
	d.Set("b", "2")
	if shared[0].Value != "1" || len(d.Fields) != 2 {
		t.Fatalf("shared %v, fields %v", shared, d.Fields)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Pairs of an odd count did not panic")
		}
	}()
	Pairs("a")
}

func TestRoundTrip(t *testing.T) {
	for _, ser := range []Serialization{JSON, RocketMQ} {
		for _, want := range samples {
			want.Serialization = ser
			frame, err := AppendFrame(nil, want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ReadCommand(bufio.NewReader(bytes.NewReader(frame)), MaxFrame)
			if err != nil {
				t.Fatalf("%v: %v", ser, err)
			}
			if len(got.Fields) == 0 && len(want.Fields) == 0 {
				got.Fields = want.Fields
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("serialization %d:\n got %+v\nwant %+v", ser, got, want)
			}
		}
	}
}

// A JSON header as RocketMQ's Java client writes it, with fields Ferry does not use.
func TestJavaJSONHeader(t *testing.T) {
	header := `{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"JAVA","opaque":42,"serializeTypeCurrentRPC":"JSON","version":395}`
	var frame []byte
	frame = append(frame, 0, 0, 0, 0)
	frame = append(frame, 0, 0, 0, byte(len(header)))
	frame = append(frame, header...)
	frame[3] = byte(len(frame) - 4)
	c, err := ReadCommand(bufio.NewReader(bytes.NewReader(frame)), MaxFrame)
	if err != nil || c.Code != GetRouteInfoByTopic || c.Opaque != 42 || c.Ext("topic") != "TopicTest" || c.Language != "JAVA" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestBadFrames(t *testing.T) {
	cases := map[string]struct {
		frame []byte
		want  error
	}{
		"over the cap":         {[]byte{0x10, 0, 0, 1, 0, 0, 0, 0}, ErrFrameTooLarge},
		"shorter than a word":  {[]byte{0, 0, 0, 2, 0, 0}, ErrMalformed},
		"header past the end":  {[]byte{0, 0, 0, 6, 0, 0, 0, 9, '{', '}'}, ErrMalformed},
		"unknown serializer":   {[]byte{0, 0, 0, 6, 7, 0, 0, 2, '{', '}'}, ErrMalformed},
		"bad JSON":             {[]byte{0, 0, 0, 6, 0, 0, 0, 2, '{', '{'}, ErrMalformed},
		"binary header short":  {[]byte{0, 0, 0, 7, 1, 0, 0, 3, 0, 1, 9}, ErrMalformed},
		"truncated connection": {[]byte{0, 0, 0, 9, 0, 0}, io.ErrUnexpectedEOF},
	}
	for name, c := range cases {
		_, err := ReadCommand(bufio.NewReader(bytes.NewReader(c.frame)), MaxFrame)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, err := ReadCommand(bufio.NewReader(strings.NewReader("")), MaxFrame); err != io.EOF {
		t.Errorf("clean close: %v, want io.EOF", err)
	}
}

func TestErrors(t *testing.T) {
	err := ResponseError(&Command{Code: TopicNotExist, Remark: "topic nope not exist"})
	if !errors.Is(err, ErrTopicNotExist) || errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("%v", err)
	}
	if ResponseError(&Command{Code: Success}) != nil {
		t.Fatal("success is an error")
	}
}

// FuzzDecodeFrame: no input may crash the decoder, and what decodes must
// encode and decode to the same command.
func FuzzDecodeFrame(f *testing.F) {
	for _, ser := range []Serialization{JSON, RocketMQ} {
		for _, c := range samples {
			c.Serialization = ser
			frame, _ := AppendFrame(nil, c)
			f.Add(frame[4:])
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		c, err := DecodeFrame(frame)
		if err != nil {
			return
		}
		checkJSONHeader(t, c)
		again, err := AppendFrame(nil, c)
		if err != nil {
			return // e.g. a header that grew past 16 MiB; nothing to compare
		}
		c2, err := DecodeFrame(again[4:])
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if c.Code != c2.Code || c.Opaque != c2.Opaque || c.Flag != c2.Flag || c.Remark != c2.Remark ||
			!bytes.Equal(c.Body, c2.Body) || !slices.Equal(c.Fields, c2.Fields) {
			t.Fatalf("round trip changed the command:\n%+v\n%+v", c, c2)
		}
	})
}

// A decoded binary header costs two allocations, the command (its fields
// beside it) and one string for all the fields' names and values; a
// response with a send's fields costs one.
func TestAllocations(t *testing.T) {
	req := NewRequest(SendMessageV2, Pairs("a", "producer", "b", "topic", "c", "TBW102", "d", "8", "e", "0", "f", "0",
		"g", "1700000000000", "h", "0", "i", "UNIQ_KEY\x01AB\x02", "j", "0", "k", "false", "m", "false"), nil)
	req.Serialization = RocketMQ
	frame, err := AppendFrame(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := DecodeFrame(frame[4:]); err != nil {
			t.Fatal(err)
		}
	}); n != 2 {
		t.Errorf("decoding a send's header: %v allocations, want 2", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		resp := req.Response(Success, "")
		resp.Fields = append(resp.Fields, Field{"msgId", "x"}, Field{"queueId", "0"}, Field{"queueOffset", "1"})
	}); n != 1 {
		t.Errorf("a send's response: %v allocations, want 1", n)
	}
}
