package remoting

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

var samples = []*Command{
	{Code: SendMessageV2, Language: "JAVA", Version: 399, Opaque: 7, ExtFields: map[string]string{"a": "producerGroup", "b": "TopicTest", "e": "3"}, Body: []byte("hello")},
	{Code: Success, Language: "GO", Version: Version, Opaque: 7, Flag: FlagResponse, Remark: "ok", ExtFields: map[string]string{"msgId": "00ff"}},
	{Code: HeartBeat, Language: "GO", Opaque: -3, Flag: FlagOneway},
	{Code: PullMessage, Language: "GO", Opaque: 1 << 30, Body: bytes.Repeat([]byte{0}, 1000)},
}

// A request with its ext fields as a list (Command.Fields) encodes as the
// same fields in a map would, in both serializations, and is found by Ext
// before and by ExtFields after the round trip; signing folds the list in.
func TestFieldsRoundTrip(t *testing.T) {
	want := map[string]string{"a": "producerGroup", "b": "TopicTest", "e": "3", "x": ""}
	for _, ser := range []Serialization{JSON, RocketMQ} {
		c := NewRequest(SendMessageV2, map[string]string{"x": ""}, []byte("hello"))
		c.Fields = []Field{{"a", "producerGroup"}, {"b", "TopicTest"}, {"e", "3"}}
		c.Serialization = ser
		if c.Ext("b") != "TopicTest" {
			t.Fatalf("Ext(b) = %q before encoding", c.Ext("b"))
		}
		if n, err := c.ExtInt("e"); err != nil || n != 3 {
			t.Fatalf("ExtInt(e) = %d, %v", n, err)
		}
		frame, err := AppendFrame(nil, c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeFrame(frame[4:])
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.ExtFields, want) || string(got.Body) != "hello" {
			t.Fatalf("serialization %d: ext %v body %q; want %v", ser, got.ExtFields, got.Body, want)
		}
	}
	c := NewRequest(SendMessageV2, nil, nil)
	c.Fields = []Field{{"a", "g"}}
	c.Sign("ak", []byte("secret"), time.Time{})
	if c.Fields != nil || c.ExtFields["a"] != "g" || !c.VerifySignature([]byte("secret")) {
		t.Fatalf("signed: fields %v ext %v", c.Fields, c.ExtFields)
	}
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
			if len(got.ExtFields) == 0 && len(want.ExtFields) == 0 {
				got.ExtFields = want.ExtFields
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
		again, err := AppendFrame(nil, c)
		if err != nil {
			return // e.g. a header that grew past 16 MiB; nothing to compare
		}
		c2, err := DecodeFrame(again[4:])
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if len(c.ExtFields) == 0 && len(c2.ExtFields) == 0 {
			c2.ExtFields = c.ExtFields
		}
		if c.Code != c2.Code || c.Opaque != c2.Opaque || c.Flag != c2.Flag || c.Remark != c2.Remark ||
			!bytes.Equal(c.Body, c2.Body) || !reflect.DeepEqual(c.ExtFields, c2.ExtFields) {
			t.Fatalf("round trip changed the command:\n%+v\n%+v", c, c2)
		}
	})
}
