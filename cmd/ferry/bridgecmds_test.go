package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferrymq/ferry/bridge/rabbitmq"
)

func TestBridgeStatus(t *testing.T) {
	want := []rabbitmq.Status{{Name: "telemetry", Direction: rabbitmq.Outbound, Topic: "devices", State: rabbitmq.StateBackingOff,
		Since: time.Now(), Forwarded: 42, Lag: 7, LastError: "connect: refused", LastErrorAt: time.Now()}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != rabbitmq.StatusPath {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(want)
	}))
	defer srv.Close()
	list, err := fetchBridges(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printBridges(&out, list)
	for _, s := range []string{"telemetry", "outbound", "backing-off", "42", "7", "connect: refused"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("status table lacks %q:\n%s", s, out.String())
		}
	}
}
