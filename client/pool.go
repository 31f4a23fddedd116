package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymq/ferry/remoting"
)

// pool keeps one connection per address and dials again when one is gone.
// With credentials (WithCredentials) it signs every request, and
// with WithTLS it dials over TLS, except to the NameServers, which check no
// credentials and serve plain TCP.
//
// Lock order: poolConn.mu → pool.mu.
type pool struct {
	mu     sync.Mutex
	conns  map[string]*poolConn
	closed bool

	user        string
	signingKey  []byte
	tls         *tls.Config // WithTLS: for brokers
	nameServers map[string]bool
	// serve, when set before the first connection, serves the requests
	// servers send on the pool's connections (see
	// remoting.Client.HandleRequests): it must not block.
	serve func(addr string, req *remoting.Command) *remoting.Command
}

type poolConn struct {
	mu sync.Mutex // serializes dialing this address
	// c is the connection, set and cleared with mu held; get reads it
	// without mu, so that a send takes no lock of the pool's but one.
	c atomic.Pointer[remoting.Client]
}

func newPool(o *options) *pool {
	p := &pool{conns: map[string]*poolConn{}, user: o.user, signingKey: o.signingKey, tls: o.tls, nameServers: map[string]bool{}}
	for _, ns := range o.nameServers {
		p.nameServers[ns] = true
	}
	return p
}

// sign signs req, bound for addr, with the user's signing key, and the
// time of signing; the password is never sent. req's ext fields and body
// are final.
func (p *pool) sign(addr string, req *remoting.Command) {
	if p.user == "" || p.nameServers[addr] {
		return
	}
	req.Sign(p.user, p.signingKey, time.Now())
}

func (p *pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// get returns a live connection to addr, dialing one within ctx if needed.
func (p *pool) get(ctx context.Context, addr string) (*remoting.Client, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	pc := p.conns[addr]
	if pc == nil {
		pc = &poolConn{}
		p.conns[addr] = pc
	}
	p.mu.Unlock()
	if c := pc.c.Load(); c != nil && c.Err() == nil {
		return c, nil // close may be closing it: the call fails as it would a moment later
	}

	pc.mu.Lock()
	defer pc.mu.Unlock()
	if p.isClosed() { // close has passed this entry, or will wait for us
		return nil, ErrClosed
	}
	if c := pc.c.Load(); c != nil {
		if c.Err() == nil {
			return c, nil
		}
		pc.c.Store(nil)
		c.Close() // already gone: this only waits for its reader
	}
	var tlsCfg *tls.Config
	if !p.nameServers[addr] {
		tlsCfg = p.tls
	}
	c, err := remoting.DialTLS(ctx, addr, tlsCfg)
	if err != nil {
		return nil, err // remoting: dial ADDR: …
	}
	if p.serve != nil {
		c.HandleRequests(func(req *remoting.Command) *remoting.Command { return p.serve(addr, req) })
	}
	pc.c.Store(c)
	return c, nil
}

// invoke sends req to addr and waits for the response, which may carry an
// error code: callers check it.
func (p *pool) invoke(ctx context.Context, addr string, req *remoting.Command) (*remoting.Command, error) {
	c, err := p.get(ctx, addr)
	if err != nil {
		return nil, err
	}
	req.Serialization = remoting.RocketMQ // binary headers: cheaper than JSON at both ends
	p.sign(addr, req)
	resp, err := c.Invoke(ctx, req)
	if err != nil {
		if p.isClosed() && errors.Is(err, remoting.ErrConnClosed) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return resp, nil
}

// call is invoke that turns an error response into an error.
func (p *pool) call(ctx context.Context, addr string, req *remoting.Command) (*remoting.Command, error) {
	resp, err := p.invoke(ctx, addr, req)
	if err != nil {
		return nil, err
	}
	if err := remoting.ResponseError(resp); err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return resp, nil
}

// oneway sends req to addr without waiting for an answer.
func (p *pool) oneway(ctx context.Context, addr string, req *remoting.Command) error {
	c, err := p.get(ctx, addr)
	if err != nil {
		return err
	}
	req.Serialization = remoting.RocketMQ
	p.sign(addr, req)
	if err := c.InvokeOneway(req); err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	return nil
}

// close closes every connection; calls in flight fail.
func (p *pool) close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*poolConn{}
	p.mu.Unlock()
	var errs []error
	for _, pc := range conns {
		pc.mu.Lock()
		if c := pc.c.Swap(nil); c != nil {
			if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		pc.mu.Unlock()
	}
	return errors.Join(errs...)
}
