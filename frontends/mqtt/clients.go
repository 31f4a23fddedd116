package mqtt

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ferrymq/ferry/core/plugin"
)

// Clients lists the MQTT clients connected now, by id: what the admin
// API's clients routes show (plugin.ClientLister).
func (s *Server) Clients() []plugin.Client {
	out := []plugin.Client{}
	for _, ss := range s.connected() {
		cl := ss.cl
		out = append(out, plugin.Client{
			ID: ss.id, User: ss.user, RemoteAddr: cl.Net.Remote, Listener: cl.Net.Listener,
			ConnectedAt: ss.since, Subscriptions: cl.State.Subscriptions.Len(),
			ProtocolVersion: int(cl.Properties.ProtocolVersion),
		})
	}
	slices.SortFunc(out, func(a, b plugin.Client) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Disconnect closes the connection of the client with id: an MQTT 5
// client is sent DISCONNECT with reason 0x98 (administrative action)
// first; 3.1.1 has no DISCONNECT from the server, so the connection is
// just closed. Its session stays as any disconnected one does (persistent: kept,
// its will published), and it may connect again.
func (s *Server) Disconnect(id string) error {
	s.mu.Lock()
	ss := s.sessions[id]
	s.mu.Unlock()
	if ss == nil {
		return fmt.Errorf("mqtt: %w: %q", plugin.ErrNoClient, id)
	}
	s.log.Info("mqtt: client disconnected by an operator", "client", id, "remote", ss.cl.Net.Remote)
	if ss.cl.Properties.ProtocolVersion == 5 {
		// The engine answers the code it sent as the error: it did what was asked.
		_ = s.mq.DisconnectClient(ss.cl, packets.ErrAdministrativeAction) // [MQTT-3.14.0-1]
		return nil
	}
	ss.cl.Stop(packets.ErrAdministrativeAction) // 3.1.1: a server sends no DISCONNECT
	return nil
}
