package core

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestState(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir, testConfig(t))
	mq, err := b.State("mqtt")
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.State("amqp")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if ok, err := mq.Load("sessions", &v); ok || err != nil {
		t.Fatalf("load of a document never saved: %v, %v", ok, err)
	}
	if err := mq.Save("sessions", map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := mq.Save("retained", json.RawMessage(`{"b":2}`)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := other.Load("sessions", &v); ok {
		t.Fatal("a namespace read another's document")
	}
	for _, bad := range []string{"", "mq-tt", "mqtt/x", "%core", "0123456789012345678901234567890123"} {
		if _, err := b.State(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("namespace %q: %v", bad, err)
		}
	}
	for _, bad := range []string{"", "../offsets", "a/b", string(make([]byte, 65))} {
		if err := mq.Save(bad, 1); !errors.Is(err, ErrInvalidName) {
			t.Errorf("document %q: %v", bad, err)
		}
	}

	// The documents outlive a restart.
	b.close(t)
	b = openBroker(t, dir, testConfig(t))
	mq, _ = b.State("mqtt")
	if ok, err := mq.Load("sessions", &v); !ok || err != nil || v["a"] != 1 {
		t.Fatalf("sessions after a restart: %v, %v, %v", v, ok, err)
	}
	v = nil
	if ok, err := mq.Load("retained", &v); !ok || err != nil || v["b"] != 2 {
		t.Fatalf("retained after a restart: %v, %v, %v", v, ok, err)
	}
}
