package remoting

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"time"
)

// Header fields of a signed request (RocketMQ ACL 1.0). The client puts its
// access key (a Ferry username) in FieldAccessKey and the signature in
// FieldSignature; the secret key never travels.
const (
	FieldSignature     = "Signature"
	FieldSecurityToken = "SecurityToken"
	// FieldSignedAt is when Ferry's SDK signed the request, in Unix
	// milliseconds. It is covered by the signature, so a broker can refuse
	// a replay of an old request; RocketMQ's clients do not send it.
	FieldSignedAt = "FerrySignedAt"
	// fieldUniqueKeyQuery is a flag RocketMQ's Java client adds after it
	// signed a query: its broker leaves it out of the content, and so do we.
	fieldUniqueKeyQuery = "_UNIQUE_KEY_QUERY"
)

// MaxSignatureLen bounds the Signature field a broker looks at: a base64
// HMAC-SHA1 is 28 characters.
const MaxSignatureLen = 64

// signedFields are the ext field names a signature covers, in the order
// it covers them: every field except the signature itself and
// _UNIQUE_KEY_QUERY, sorted by name (bytewise).
func signedFields(ext map[string]string) []string {
	keys := make([]string, 0, len(ext))
	for k := range ext {
		if k != FieldSignature && k != fieldUniqueKeyQuery {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// writeContent writes what a signature covers to h: the values of the
// signed ext fields in name order, without separators, then the body.
func writeContent(h hash.Hash, ext map[string]string, body []byte) {
	keys := signedFields(ext)
	n := 0
	for _, k := range keys {
		n += len(ext[k])
	}
	buf := make([]byte, 0, n) // the fields in one write: a write per field costs a copy each
	for _, k := range keys {
		buf = append(buf, ext[k]...)
	}
	h.Write(buf)
	h.Write(body)
}

// SignedContent is what a signature of a request with these ext fields and
// body covers (RocketMQ ACL 1.0): the values of every ext field except
// Signature and _UNIQUE_KEY_QUERY, in the order of their names, without
// separators, followed by the body.
func SignedContent(ext map[string]string, body []byte) []byte {
	var out []byte
	for _, k := range signedFields(ext) {
		out = append(out, ext[k]...)
	}
	return append(out, body...)
}

// signature is base64(HMAC-SHA1(secretKey, content of c)).
func signature(c *Command, secretKey []byte) []byte {
	m := hmac.New(sha1.New, secretKey)
	writeContent(m, c.ExtFields, c.Body)
	var sum [sha1.Size]byte
	raw := m.Sum(sum[:0])
	out := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
	base64.StdEncoding.Encode(out, raw)
	return out
}

// Sign signs c as RocketMQ's clients do (ACL 1.0) for accessKey with
// secretKey: it sets AccessKey, and Signature to
// base64(HMAC-SHA1(secretKey, SignedContent)). A Password field is removed:
// a signed request never carries one. With at not zero it also sets
// FerrySignedAt (covered by the signature) to at in Unix milliseconds. c's
// ext fields and body must not change afterwards.
func (c *Command) Sign(accessKey string, secretKey []byte, at time.Time) {
	if c.extMap() == nil {
		c.ExtFields = map[string]string{}
	}
	delete(c.ExtFields, FieldPassword)
	delete(c.ExtFields, FieldSignature)
	c.ExtFields[FieldAccessKey] = accessKey
	if !at.IsZero() {
		c.ExtFields[FieldSignedAt] = strconv.FormatInt(at.UnixMilli(), 10)
	}
	c.ExtFields[FieldSignature] = string(signature(c, secretKey))
}

// Signed reports whether c carries a signature.
func (c *Command) Signed() bool { return c.ExtFields[FieldSignature] != "" }

// VerifySignature reports whether c's Signature is the one secretKey makes
// of c's content, comparing in constant time. A missing signature, or one
// longer than MaxSignatureLen, does not verify.
func (c *Command) VerifySignature(secretKey []byte) bool {
	got := c.ExtFields[FieldSignature]
	if got == "" || len(got) > MaxSignatureLen {
		return false
	}
	return hmac.Equal(signature(c, secretKey), []byte(got))
}

// SignedAt returns the time FerrySignedAt holds; ok is false when c has no
// such field, and err names a value that is not Unix milliseconds.
func (c *Command) SignedAt() (at time.Time, ok bool, err error) {
	v, ok := c.ExtFields[FieldSignedAt]
	if !ok {
		return time.Time{}, false, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, true, fmt.Errorf("%w: header field %q = %.32q is not Unix milliseconds", ErrMalformed, FieldSignedAt, v)
	}
	return time.UnixMilli(ms), true, nil
}
