package admin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/ferrymq/ferry/core/plugin"
)

// ClientView is a front-end's client as the API lists it: the client and
// the protocol (the plug-in's name: mqtt) it speaks.
type ClientView struct {
	Protocol string `json:"protocol"`
	plugin.Client
}

// clientListers are the plug-ins that list their clients
// (plugin.ClientLister), by name.
func clientListers(plugins []plugin.Plugin) map[string]plugin.ClientLister {
	out := map[string]plugin.ClientLister{}
	for _, p := range plugins {
		if l, ok := p.(plugin.ClientLister); ok {
			out[p.Name()] = l
		}
	}
	return out
}

// listClients answers the clients of every front-end that lists them, by
// protocol and id; ?protocol=P keeps one. Client ids, users and addresses
// are the operators': it needs the admin permission.
func (s *Server) listClients(w http.ResponseWriter, r *http.Request, user string) {
	if !s.mayAdmin(w, user, "list the clients") {
		return
	}
	want := r.URL.Query().Get("protocol")
	if want != "" && s.clients[want] == nil {
		writeError(w, http.StatusNotFound, s.noProtocol(want))
		return
	}
	out := []ClientView{}
	for name, l := range s.clients {
		if want != "" && name != want {
			continue
		}
		for _, c := range l.Clients() {
			out = append(out, ClientView{Protocol: name, Client: c})
		}
	}
	slices.SortFunc(out, func(a, b ClientView) int {
		if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	writeJSON(w, http.StatusOK, out)
}

// disconnectClient closes a client's connection; it may connect again.
func (s *Server) disconnectClient(w http.ResponseWriter, r *http.Request, user string) {
	proto, id := r.PathValue("protocol"), r.PathValue("id")
	if !s.mayAdmin(w, user, "disconnect "+proto+" client "+id) {
		return
	}
	l := s.clients[proto]
	if l == nil {
		writeError(w, http.StatusNotFound, s.noProtocol(proto))
		return
	}
	if err := l.Disconnect(id); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, plugin.ErrNoClient) {
			status = http.StatusNotFound
		}
		writeError(w, status, err)
		return
	}
	s.changed(r, user, "client disconnected", "protocol", proto, "client", id)
	w.WriteHeader(http.StatusNoContent)
}

// noProtocol says that no running front-end named proto lists clients.
func (s *Server) noProtocol(proto string) error {
	names := make([]string, 0, len(s.clients))
	for n := range s.clients {
		names = append(names, n)
	}
	slices.Sort(names)
	return fmt.Errorf("no front-end %q lists its clients here (running: %s)", proto, strings.Join(names, ", "))
}

// Purged names the groups a purge moved to the end of the topic.
type Purged struct {
	Groups []string `json:"groups"`
}

// purgeTopic skips the topic's backlog for every group (core.PurgeTopic).
func (s *Server) purgeTopic(w http.ResponseWriter, r *http.Request, user string) {
	name := r.PathValue("topic")
	if !s.mayAdmin(w, user, "purge topic "+name) {
		return
	}
	groups, err := s.b.PurgeTopic(name)
	if groups == nil {
		groups = []string{}
	}
	if len(groups) > 0 {
		s.changed(r, user, "topic purged", "topic", name, "groups", groups)
	}
	if err != nil {
		writeCoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, Purged{Groups: groups})
}
