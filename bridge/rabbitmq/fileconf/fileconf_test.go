package fileconf

import (
	"strings"
	"testing"
)

// Validate names the entry and the key of what is wrong; a valid list passes.
func TestValidate(t *testing.T) {
	ok := Bridge{Name: "out", Direction: "outbound", URL: "amqp://127.0.0.1:5672/", Topic: "t"}
	if err := Validate([]Bridge{ok}); err != nil {
		t.Fatal(err)
	}
	in := ok
	in.Name, in.Direction = "in", "inbound"
	for _, c := range []struct {
		list []Bridge
		want string
	}{
		{[]Bridge{in}, "bridges[0] (in).queue.name"},
		{[]Bridge{ok, ok}, "bridges[1] (out).name: another bridge"},
		{[]Bridge{{Name: "x", Direction: "outbound", URL: "http://h/", Topic: "t"}}, "bridges[0] (x).url"},
		{[]Bridge{{Name: "x", Direction: "outbound", URL: "amqp://h/", Topic: "t", BackoffMin: 2, BackoffMax: 1}}, "backoff-max"},
	} {
		if err := Validate(c.list); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want an error with %q", c.list, err, c.want)
		}
	}
}

// ResolvePasswords puts the variable's value into the URL, keeping the
// user, and names a variable that is not set.
func TestResolvePasswords(t *testing.T) {
	bs := []Bridge{{Name: "b", URL: "amqp://ferry@127.0.0.1:5672/", PasswordEnv: "PW"}}
	env := map[string]string{"PW": "s3cret"}
	if err := ResolvePasswords(bs, func(n string) string { return env[n] }); err != nil {
		t.Fatal(err)
	}
	if bs[0].URL != "amqp://ferry:s3cret@127.0.0.1:5672/" {
		t.Fatalf("URL %q", bs[0].URL)
	}
	bs[0].PasswordEnv = "NOPE"
	if err := ResolvePasswords(bs, func(n string) string { return env[n] }); err == nil || !strings.Contains(err.Error(), "NOPE is not set") {
		t.Fatalf("unset variable: %v", err)
	}
}
