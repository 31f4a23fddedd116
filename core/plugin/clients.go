package plugin

import (
	"errors"
	"time"
)

// Client is a connection a front-end serves, as operators list it.
type Client struct {
	// ID is the client's id in its protocol (the MQTT client identifier).
	ID string `json:"id"`
	// User is the username it logged in with, "" when anonymous.
	User string `json:"user"`
	// RemoteAddr is the address it connects from.
	RemoteAddr string `json:"remoteAddr"`
	// Listener is the front-end's listener it came in on (tcp, ws, tls).
	Listener string `json:"listener,omitempty"`
	// ConnectedAt is when its current connection was established.
	ConnectedAt time.Time `json:"connectedAt"`
	// Subscriptions counts its subscriptions.
	Subscriptions int `json:"subscriptions"`
	// ProtocolVersion is the protocol's version it speaks (4: MQTT 3.1.1,
	// 5: MQTT 5).
	ProtocolVersion int `json:"protocolVersion"`
}

// ErrNoClient is returned by Disconnect for a client that is not connected.
var ErrNoClient = errors.New("no such client connected")

// ClientLister is the optional capability of a front-end whose clients
// operators list and disconnect (the admin API's clients routes): a
// plug-in that implements it is found among the application's plug-ins by
// interface, as a Checker is.
type ClientLister interface {
	// Clients lists the clients connected now, by id.
	Clients() []Client
	// Disconnect closes the connection of the client with id; it may
	// connect again. ErrNoClient when none with that id is connected.
	Disconnect(id string) error
}
