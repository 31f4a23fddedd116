package clusterauth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

func mustKey(t testing.TB, secret string) *Key {
	t.Helper()
	k, err := NewKey([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func registration() *remoting.Command {
	return remoting.NewRequest(remoting.RegisterBroker, remoting.Pairs(
		"brokerName", "broker-a", "brokerAddr", "10.0.0.1:10911", "clusterName", "DefaultCluster", "brokerId", "0",
	), []byte(`{"topicConfigSerializeWrapper":{"topicConfigTable":{"devices":{}}}}`))
}

func clone(c *remoting.Command) *remoting.Command {
	cp := *c
	cp.Fields = slices.Clone(c.Fields)
	cp.Body = bytes.Clone(c.Body)
	return &cp
}

func TestSignVerify(t *testing.T) {
	k := mustKey(t, "0123456789abcdef-cluster")
	now := time.Unix(1_700_000_000, 0)
	req := registration()
	if err := k.Sign(req, now); err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(k)
	if err := v.Verify(clone(req), now.Add(time.Second)); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	if err := v.Verify(clone(req), now.Add(2*time.Second)); !errors.Is(err, ErrReplay) {
		t.Fatalf("the same request again: %v, want a replay", err)
	}

	// Every part is covered: change any and the signature fails.
	for name, change := range map[string]func(c *remoting.Command){
		"code":        func(c *remoting.Command) { c.Code = remoting.UnregisterBroker },
		"ext value":   func(c *remoting.Command) { c.Set("brokerAddr", "10.6.6.6:10911") },
		"ext added":   func(c *remoting.Command) { c.Set("extra", "") },
		"ext dropped": func(c *remoting.Command) { c.Del("brokerId") },
		"body":        func(c *remoting.Command) { c.Body = append(c.Body, ' ') },
		"body empty":  func(c *remoting.Command) { c.Body = nil },
		"timestamp":   func(c *remoting.Command) { c.Set(FieldTimestamp, "1700000001000") },
		"nonce":       func(c *remoting.Command) { c.Set(FieldNonce, strings.Repeat("0", 32)) },
		"signature":   func(c *remoting.Command) { c.Set(FieldSignature, strings.Repeat("0", 64)) },
	} {
		c := clone(req)
		change(c)
		if err := NewVerifier(k).Verify(c, now); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s changed: %v, want a bad signature", name, err)
		}
	}
	if err := NewVerifier(mustKey(t, "another secret of the cluster")).Verify(clone(req), now); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another secret: %v", err)
	}
	for _, d := range []time.Duration{Window + time.Second, -Window - time.Second} {
		err := NewVerifier(k).Verify(clone(req), now.Add(d))
		if !errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "±5m0s") {
			t.Errorf("checked %v after signing: %v, want stale naming the limit", d, err)
		}
	}
	if err := NewVerifier(k).Verify(clone(req), now.Add(Window)); err != nil {
		t.Errorf("at the edge of the window: %v", err)
	}
	if err := NewVerifier(k).Verify(registration(), now); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}
	for name, change := range map[string]func(c *remoting.Command){
		"no nonce":        func(c *remoting.Command) { c.Del(FieldNonce) },
		"short signature": func(c *remoting.Command) { c.Set(FieldSignature, "abcd") },
		"upper hex":       func(c *remoting.Command) { c.Set(FieldSignature, strings.ToUpper(c.Ext(FieldSignature))) },
		"bad timestamp":   func(c *remoting.Command) { c.Set(FieldTimestamp, "-5") },
		"long timestamp":  func(c *remoting.Command) { c.Set(FieldTimestamp, strings.Repeat("9", 40)) },
		"long nonce":      func(c *remoting.Command) { c.Set(FieldNonce, c.Ext(FieldNonce)+"00") },
	} {
		c := clone(req)
		change(c)
		if err := NewVerifier(k).Verify(c, now); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
}

// The MAC of a registration is the one Ferry made when ext fields were a
// map, whatever the fields' order and with a name repeated (its last value
// counts): NameServers and brokers of either kind agree.
func TestMACUnchanged(t *testing.T) {
	k := mustKey(t, "0123456789abcdef-cluster")
	req := registration()
	req.Fields = append([]remoting.Field{{Name: "epoch", Value: "2"}, {Name: FieldSignature, Value: "old"}}, req.Fields...)
	req.Set(FieldNonce, "00112233445566778899aabbccddeeff")
	req.Set(FieldTimestamp, "1700000000000")
	req.Fields = append(req.Fields, remoting.Field{Name: "epoch", Value: "3"})
	if got, want := hex.EncodeToString(k.mac(req)), "ec260a521620cddebad1693b771e331aad2b2c3d76ff29b5c402caaf7043ad24"; got != want {
		t.Fatalf("MAC %s, want %s", got, want)
	}
}

// The encoding is unambiguous: moving bytes between a name and its value,
// or between fields and the body, changes what is signed.
func TestCanonicalUnambiguous(t *testing.T) {
	enc := func(ext []remoting.Field, body string) []byte {
		var b bytes.Buffer
		h := &recorder{&b}
		writeCanonical(h, remoting.NewRequest(remoting.RegisterBroker, ext, []byte(body)))
		return b.Bytes()
	}
	pairs := [][2][]byte{
		{enc(remoting.Pairs("a", "bc"), ""), enc(remoting.Pairs("ab", "c"), "")},
		{enc(remoting.Pairs("a", "b", "c", "d"), ""), enc(remoting.Pairs("a", "b\x00\x00\x00\x01cd"), "")},
		{enc(remoting.Pairs("a", "b"), "c"), enc(remoting.Pairs("a", "bc"), "")},
		{enc(nil, ""), enc(remoting.Pairs("", ""), "")},
	}
	for i, p := range pairs {
		if bytes.Equal(p[0], p[1]) {
			t.Errorf("pair %d encodes alike", i)
		}
	}
}

// recorder is a hash.Hash that keeps what is written, to compare encodings.
type recorder struct{ *bytes.Buffer }

func (recorder) Sum(b []byte) []byte { return b }
func (recorder) Size() int           { return sha256.Size }
func (recorder) BlockSize() int      { return sha256.BlockSize }

func TestReplayCacheBounded(t *testing.T) {
	k := mustKey(t, "0123456789abcdef-cluster")
	v := NewVerifier(k)
	v.max = 3
	now := time.Unix(1_700_000_000, 0)
	sign := func(at time.Time) *remoting.Command {
		req := registration()
		if err := k.Sign(req, at); err != nil {
			t.Fatal(err)
		}
		return req
	}
	for i := range 3 {
		if err := v.Verify(sign(now), now); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	err := v.Verify(sign(now), now)
	if !errors.Is(err, ErrReplayCacheFull) || !strings.Contains(err.Error(), "3 nonces") {
		t.Fatalf("past the limit: %v", err)
	}
	// Once the first nonces are out of the window, room is made.
	later := now.Add(Window + time.Minute)
	if err := v.Verify(sign(later), later); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if n := v.Nonces(); n != 1 {
		t.Fatalf("%d nonces remembered, want 1", n)
	}
}

func TestNewKeyLimits(t *testing.T) {
	if _, err := NewKey([]byte("short")); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short secret: %v", err)
	}
	if _, err := NewKey(bytes.Repeat([]byte("x"), MaxSecretLen+1)); err == nil || !strings.Contains(err.Error(), "at most 4096") {
		t.Errorf("long secret: %v", err)
	}
	k := mustKey(t, "0123456789abcdef-cluster")
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, "0123") || !strings.Contains(s, "redacted") {
			t.Errorf("key printed as %q", s)
		}
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s, loose, err := ReadSecretFile(write("ok", "0123456789abcdef-cluster\n", 0o600))
	if err != nil || string(s) != "0123456789abcdef-cluster" || loose {
		t.Fatalf("ok file: %q %v %v", s, loose, err)
	}
	if _, loose, err := ReadSecretFile(write("loose", "0123456789abcdef-cluster", 0o644)); err != nil || !loose {
		t.Fatalf("world-readable file: %v %v", loose, err)
	}
	if _, _, err := ReadSecretFile(write("short", "abc\n", 0o600)); err == nil || !strings.Contains(err.Error(), "want 16 to 4096") {
		t.Fatalf("short secret: %v", err)
	}
	if _, _, err := ReadSecretFile(write("long", strings.Repeat("x", 10000), 0o600)); err == nil || !strings.Contains(err.Error(), "at most 4096") {
		t.Fatalf("long file: %v", err)
	}
	if _, _, err := ReadSecretFile(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "cluster-secret-file") {
		t.Fatalf("missing file: %v", err)
	}
}

// FuzzVerify feeds the verifier arbitrary signature fields, ext fields and
// bodies: it never panics, accepts nothing it did not sign, and accepts
// what it signed exactly once.
func FuzzVerify(f *testing.F) {
	k := mustKey(f, "0123456789abcdef-cluster")
	now := time.Unix(1_700_000_000, 0)
	good := registration()
	if err := k.Sign(good, now); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Ext(FieldTimestamp), good.Ext(FieldNonce), good.Ext(FieldSignature), "brokerAddr", "10.0.0.1:10911", []byte("{}"), false)
	f.Add("", "", "", "", "", []byte(nil), true)
	f.Add("1700000000000", strings.Repeat("a", 32), strings.Repeat("f", 64), "a", "b", []byte("c"), true)
	f.Fuzz(func(t *testing.T, ts, nonce, sig, name, value string, body []byte, sign bool) {
		req := remoting.NewRequest(remoting.RegisterBroker, remoting.Pairs(name, value), body)
		if ts != "" {
			req.Set(FieldTimestamp, ts)
		}
		if nonce != "" {
			req.Set(FieldNonce, nonce)
		}
		if sig != "" {
			req.Set(FieldSignature, sig)
		}
		v := NewVerifier(k)
		if !sign {
			if err := v.Verify(req, now); err == nil {
				t.Fatalf("accepted a request it did not sign: %v", req.Fields)
			}
			return
		}
		if err := k.Sign(req, now); err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(clone(req), now); err != nil {
			t.Fatalf("refused what it signed: %v", err)
		}
		if err := v.Verify(req, now); !errors.Is(err, ErrReplay) {
			t.Fatalf("accepted a replay: %v", err)
		}
	})
}
