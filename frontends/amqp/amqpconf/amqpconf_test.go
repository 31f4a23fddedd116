package amqpconf

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
		{func(c *Config) { c.TLSCert = "c.pem" }, "amqp.tls-cert and amqp.tls-key"},
		{func(c *Config) { c.FrameMax = 100 }, "amqp.frame-max 100"},
		{func(c *Config) { c.ChannelMax = 0 }, "amqp.channel-max 0"},
		{func(c *Config) { c.Heartbeat = 1500 * time.Millisecond }, "amqp.heartbeat"},
		{func(c *Config) { c.MaxUnacked = 0 }, "amqp.max-unacked"},
	} {
		c := Default()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want an error with %q", err, tc.want)
		}
	}
}
