//go:build !linux

package poll

import "syscall"

// Poller is not available here: New returns ErrUnsupported.
type Poller struct{}

// New returns ErrUnsupported.
func New(int) (*Poller, error) { return nil, ErrUnsupported }

// Close does nothing.
func (*Poller) Close() error { return nil }

// Add is not to be called here.
func (*Poller) Add(syscall.RawConn, func()) (*Handle, error) { return nil, ErrUnsupported }

// Pause does nothing here.
func (*Handle) Pause() {}

// Resume does nothing here.
func (*Handle) Resume() {}

// Remove does nothing here.
func (*Handle) Remove() {}

type loop struct{}

type ctlFunc func(int, uint32) error
