package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymq/ferry/internal/authtest"
	"github.com/ferrymq/ferry/internal/tlstest"
)

const testACL = `
user alice
topic readwrite devices/#
topic write amqp-default/#
group work
`

func TestAuthRefusals(t *testing.T) {
	f := startFerry(t, Config{Guard: authtest.New(t, map[string]string{"alice": "secret"}, testACL)})
	addr := f.srv.Addrs()[0].String()
	for _, url := range []string{"amqp://alice:wrong@" + addr + "/", "amqp://nobody:x@" + addr + "/", "amqp://" + addr + "/"} {
		_, err := amqp091.Dial(url)
		var ae *amqp091.Error
		if !errors.As(err, &ae) || ae.Code != 403 {
			t.Errorf("%s: %v, want 403 ACCESS_REFUSED", url, err)
		}
	}
	// AMQPLAIN as well as PLAIN.
	c, err := amqp091.DialConfig("amqp://"+addr+"/", amqp091.Config{SASL: []amqp091.Authentication{&amqp091.AMQPlainAuth{Username: "alice", Password: "secret"}}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	c, err = amqp091.Dial("amqp://alice:secret@" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := openChannel(t, c)
	if _, err := ch.QueueDeclare("work", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("work", "devices.#", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Consume("work", "", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "amq.topic", "devices.1.t", false, "ok")

	for _, tc := range []struct {
		name string
		do   func(*amqp091.Channel) error
	}{
		{"publish to a topic not granted", func(ch *amqp091.Channel) error {
			ch.PublishWithContext(context.Background(), "amq.topic", "secrets.1", false, false, amqp091.Publishing{})
			_, err := ch.QueueDeclare("work", false, false, false, false, nil)
			return err
		}},
		{"bind to a topic not readable", func(ch *amqp091.Channel) error {
			return ch.QueueBind("work", "secrets.#", "amq.topic", false, nil)
		}},
		{"consume a queue without its group line", func(ch *amqp091.Channel) error {
			if _, err := ch.QueueDeclare("other", false, false, false, false, nil); err != nil {
				return err
			}
			_, err := ch.Consume("other", "", true, false, false, false, nil)
			return err
		}},
	} {
		ch := openChannel(t, c)
		err := tc.do(ch)
		var ae *amqp091.Error
		if !errors.As(err, &ae) || ae.Code != 403 || !strings.Contains(ae.Reason, "alice") {
			t.Errorf("%s: %v, want 403 naming the user", tc.name, err)
		}
	}
}

func TestTLS(t *testing.T) {
	cert, key, pool := tlstest.SelfSigned(t, t.TempDir())
	f := startFerry(t, Config{TLSAddr: "127.0.0.1:0", TLSCertFile: cert, TLSKeyFile: key})
	addrs := f.srv.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("listeners %v", addrs)
	}
	c, err := amqp091.DialTLS("amqps://guest:guest@"+addrs[1].String()+"/", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := openChannel(t, c)
	if _, err := ch.QueueDeclare("secure", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
}
