// Package remoting is the wire format of Ferry's native protocol, which is
// RocketMQ's remoting protocol (4.x): every message on a TCP connection is a
// frame
//
//	length  u32  bytes that follow: 4 + header + body
//	type    u8   header serialization: 0 JSON, 1 RocketMQ binary
//	hlen    u24  header bytes
//	header       code, language, version, opaque, flag, remark, extFields
//	body         the rest
//
// all big-endian. A request and its response share the opaque; bit 0 of
// flag marks a response, bit 1 a one-way request. The NameServer, the
// broker's native front-end and the Go SDK all speak it through this package.
package remoting

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Serialization is how a frame's header is encoded.
type Serialization byte

const (
	JSON     Serialization = 0
	RocketMQ Serialization = 1
)

// Header fields that carry a client's credentials to a broker that checks
// them: RocketMQ's AccessKey (the username), with a Signature (sign.go), or
// Ferry's deprecated Password, which its SDK no longer sends.
const (
	FieldAccessKey = "AccessKey"
	FieldPassword  = "Password"
)

// Flag bits.
const (
	FlagResponse = 1 << 0
	FlagOneway   = 1 << 1
)

// Version is the protocol version Ferry announces (RocketMQ 4.9's).
const Version = 399

// Command is one request or response.
type Command struct {
	Code     int16
	Language string // "JAVA", "GO", …
	Version  int16
	Opaque   int32
	Flag     int32
	Remark   string
	// Fields are the header's ext fields in the order they go on the wire
	// (or came: a decoded binary header keeps its order; a JSON one is
	// sorted by name). A name may appear more than once in a decoded
	// header; its last occurrence is the one that counts, as in RocketMQ's
	// HashMap: Lookup, Set and SortedFields keep to that. Set and Del change
	// the slice in place: a command that shares its Fields with another
	// clones them first.
	Fields []Field
	Body   []byte

	// Serialization is how the header came (decode) or goes (encode).
	Serialization Serialization

	frame     []byte // a large frame's own memory, which Body lies in: see Release
	bodyGiven bool   // Body goes back to the frame cache once encoded: see GiveBody
	lent      *lease // the read buffer Body lies in: see Release and lent.go
}

// Field is one ext field of a command's header.
type Field struct{ Name, Value string }

// Pairs makes ext fields of alternating names and values:
// Pairs("topic", "t", "queueId", "0"). It panics on an odd count of
// strings, a mistake of the call site.
func Pairs(kv ...string) []Field {
	if len(kv)%2 != 0 {
		panic(fmt.Sprintf("remoting: Pairs of %d strings, want name and value pairs", len(kv)))
	}
	fields := make([]Field, len(kv)/2)
	for i := range fields {
		fields[i] = Field{kv[2*i], kv[2*i+1]}
	}
	return fields
}

// IsResponse reports whether c answers a request.
func (c *Command) IsResponse() bool { return c.Flag&FlagResponse != 0 }

// IsOneway reports whether c is a request that wants no answer.
func (c *Command) IsOneway() bool { return c.Flag&FlagOneway != 0 }

// NewRequest makes a request with code, a copy of fields, and body. The
// copy lives in the request's own allocation, with room for the fields
// signing adds: a caller's list can be a literal that stays on its stack.
func NewRequest(code int16, fields []Field, body []byte) *Command {
	c := newCommand(len(fields) + SigningFields)
	*c = Request(code, append(c.Fields, fields...), body)
	return c
}

// Request is a request with code, fields (not copied) and body, by value:
// for a caller that keeps requests in memory of its own, as the SDK's
// async sends do.
func Request(code int16, fields []Field, body []byte) Command {
	return Command{Code: code, Language: "GO", Version: Version, Fields: fields, Body: body}
}

// SigningFields is the most fields Sign adds: AccessKey, FerrySignedAt
// and Signature. A request's fields need room for them to be signed
// without growing.
const SigningFields = 3

// Response makes the response to c with a response code and remark, in the
// same serialization, without ext fields but with room for a few (a send's
// or a pull's) in the same allocation.
func (c *Command) Response(code int16, remark string) *Command {
	resp := newCommand(responseFields)
	c.initResponse(resp, code, remark)
	return resp
}

// initResponse sets a new (zero) response's fields, one by one: a whole
// Command assigned would write its zero fields too, each pointer with a
// write barrier while the collector marks.
func (c *Command) initResponse(resp *Command, code int16, remark string) {
	resp.Code, resp.Language, resp.Version, resp.Opaque, resp.Flag = code, "GO", Version, c.Opaque, FlagResponse
	if remark != "" {
		resp.Remark = remark
	}
	resp.Serialization = c.Serialization
}

// ResponseBuf is Response with, in the same allocation, an empty buffer of
// responseBytes for the values of the fields the caller adds (a send's
// msgId and offsets), which it appends to and takes its strings from
// (unsafe.String): one allocation an answer, not two. The buffer lives as
// long as the response; appending past its capacity moves it, as any slice.
func (c *Command) ResponseBuf(code int16, remark string) (*Command, []byte) {
	p := new(struct {
		c Command
		f [responseFields]Field
		b [responseBytes]byte
	})
	p.c.Fields = p.f[:0]
	c.initResponse(&p.c, code, remark)
	return &p.c, p.b[:0]
}

// responseBytes is the buffer ResponseBuf makes: an IPv6 offsetMsgId (56)
// and two numbers.
const responseBytes = 96

// responseFields is the room Response makes for ext fields: a pull
// response's four.
const responseFields = 4

// newCommand is a command whose Fields have room for n fields in the
// command's own allocation (two allocations a command cost a fifth of a
// small message's publish): the array lives beside the command, up to 16.
func newCommand(n int) *Command {
	switch {
	case n == 0:
		return &Command{}
	case n <= 4:
		p := new(struct {
			c Command
			f [4]Field
		})
		p.c.Fields = p.f[:0]
		return &p.c
	case n <= 8:
		p := new(struct {
			c Command
			f [8]Field
		})
		p.c.Fields = p.f[:0]
		return &p.c
	case n <= 16: // a signed send's 15
		p := new(struct {
			c Command
			f [16]Field
		})
		p.c.Fields = p.f[:0]
		return &p.c
	}
	return &Command{Fields: make([]Field, 0, n)}
}

// JSONResponse is a successful response to c whose body is v as JSON (or a
// system error if v does not encode).
func (c *Command) JSONResponse(v any) *Command {
	body, err := json.Marshal(v)
	if err != nil {
		return c.Response(SystemError, err.Error())
	}
	resp := c.Response(Success, "")
	resp.Body = body
	return resp
}

// String describes c for logs: code, opaque, flag, remark; not the body.
func (c *Command) String() string {
	kind := "request"
	if c.IsResponse() {
		kind = "response"
	}
	return fmt.Sprintf("%s code=%d opaque=%d flag=%d remark=%q ext=%d body=%d", kind, c.Code, c.Opaque, c.Flag, c.Remark, len(c.Fields), len(c.Body))
}

// Ext returns an ext field, "" when absent.
func (c *Command) Ext(name string) string {
	v, _ := c.Lookup(name)
	return v
}

// Lookup returns an ext field's value (its last occurrence) and whether c
// has it.
func (c *Command) Lookup(name string) (string, bool) {
	if i := c.index(name); i >= 0 {
		return c.Fields[i].Value, true
	}
	return "", false
}

// index is the position of name's last occurrence in c.Fields, or -1.
func (c *Command) index(name string) int {
	for i := len(c.Fields) - 1; i >= 0; i-- {
		if c.Fields[i].Name == name {
			return i
		}
	}
	return -1
}

// Set sets an ext field: it replaces the value of name's last occurrence,
// or appends the field.
func (c *Command) Set(name, value string) {
	if i := c.index(name); i >= 0 {
		c.Fields[i].Value = value
		return
	}
	c.Fields = append(c.Fields, Field{name, value})
}

// Del removes every occurrence of an ext field, keeping the others' order.
func (c *Command) Del(name string) {
	if c.index(name) < 0 {
		return // no copy: Fields may be shared with a caller that only reads
	}
	c.Fields = slices.DeleteFunc(c.Fields, func(f Field) bool { return f.Name == name })
}

// SortedFields is c's ext fields by name (bytewise), each name once with
// the value of its last occurrence: what signatures cover and JSON
// headers carry.
func (c *Command) SortedFields() []Field {
	return appendSorted(make([]Field, 0, len(c.Fields)), c.Fields)
}

// appendSorted appends fields to dst sorted by name, each name once with
// its last value, and returns the extended slice.
func appendSorted(dst, fields []Field) []Field {
	start := len(dst)
	dst = append(dst, fields...)
	sorted := dst[start:]
	// Stable: equal names keep their order, so the last of a run is the
	// last occurrence.
	slices.SortStableFunc(sorted, func(a, b Field) int { return strings.Compare(a.Name, b.Name) })
	n := 0
	for i, f := range sorted {
		if i+1 < len(sorted) && sorted[i+1].Name == f.Name {
			continue
		}
		sorted[n] = f
		n++
	}
	return dst[:start+n]
}

// ExtInt parses an integer ext field; a missing one is an error that names it.
func (c *Command) ExtInt(name string) (int64, error) {
	v, ok := c.Lookup(name)
	if !ok {
		return 0, fmt.Errorf("%w: missing header field %q", ErrMalformed, name)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: header field %q = %.32q is not an integer", ErrMalformed, name, v)
	}
	return n, nil
}
