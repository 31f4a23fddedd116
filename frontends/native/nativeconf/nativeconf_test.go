package nativeconf

import (
	"strings"
	"testing"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.MaxFrame = 1 << 31 }, "native.max-frame 2147483648"},
		{func(c *Config) { c.TLSKey = "k.pem" }, "native.tls-cert and native.tls-key"},
		{func(c *Config) { c.MaxConnections = 0 }, "native.max-connections 0"},
		{func(c *Config) { c.MaxQueuedBytes = -1 }, "native.max-queued-bytes -1"},
		{func(c *Config) { c.FirstRequestTimeout = 0 }, "native.first-request-timeout 0s"},
	} {
		c := Default()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want an error with %q", err, tc.want)
		}
	}
}

// Each old key is renamed once, each new key is the target of one old key.
func TestRenamedIsOneToOne(t *testing.T) {
	olds, news := map[string]bool{}, map[string]bool{}
	for _, r := range Renamed {
		if olds[r[0]] || news[r[1]] {
			t.Errorf("%s → %s: renamed twice", r[0], r[1])
		}
		olds[r[0]], news[r[1]] = true, true
	}
}
