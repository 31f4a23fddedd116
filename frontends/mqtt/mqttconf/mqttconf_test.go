package mqttconf

import (
	"strings"
	"testing"
	"time"
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
		{func(c *Config) { c.TLSCert = "c.pem" }, "mqtt.tls-cert and mqtt.tls-key"},
		{func(c *Config) { c.TLSCert, c.TLSAddr = "c.pem", "off" }, ""}, // the TLS listener is off: no key needed
		{func(c *Config) { c.MaxInflight = 0 }, "mqtt.max-inflight 0"},
		{func(c *Config) { c.MaxSessionExpiry = -1 }, "mqtt.max-session-expiry"},
		{func(c *Config) { c.MaxKeepAlive = 70000 * time.Second }, "mqtt.max-keep-alive"},
		{func(c *Config) { c.MaxKeepAlive = 1500 * time.Millisecond }, "mqtt.max-keep-alive"},
		{func(c *Config) { c.Rules = []Rule{{Prefix: "a/"}} }, "mqtt.rules[0]"},
	} {
		c := Default()
		tc.edit(&c)
		err := c.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", c, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want an error with %q", err, tc.want)
		}
	}
}
