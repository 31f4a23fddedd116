package rabbittest

import (
	"strings"
	"testing"
)

// StartNode's RabbitMQ is the test's own: it answers on its own port, and
// an alarm raised on it is its alone.
func TestStartNode(t *testing.T) {
	n := StartNode(t)
	if strings.Contains(n.URL, ":5672/") && n.name != "" {
		t.Fatalf("own node on the shared port: %s", n.URL)
	}
	_, ch := Channel(t, n.URL)
	if _, err := ch.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if got := n.Ctl(t, "eval", "node()."); n.name != "" && got != "'"+n.name+"'" {
		t.Fatalf("rabbitmqctl reached %s, want %s", got, n.name)
	}
}
