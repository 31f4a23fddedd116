package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ferrymq/ferry/clusterauth"
	"github.com/ferrymq/ferry/remoting"
)

const (
	// dialTimeout bounds a connection attempt to one controller.
	dialTimeout = time.Second
	// callTimeout bounds one request to one controller (the leader's
	// answer waits for a Raft commit when the request changes state).
	callTimeout = 3 * time.Second
	// roundPause is the wait after every controller was tried without an
	// answer (an election under way), before the next round.
	roundPause = 100 * time.Millisecond
)

// Client speaks to the controllers for a broker (and for ferry cluster
// list). It keeps one connection, to the leader once it knows it: a
// follower answers with the leader's address, which the client follows; a
// controller that cannot be reached is skipped for the next in the list.
// Its methods are safe for concurrent use.
type Client struct {
	addrs  []string
	key    *clusterauth.Key
	logger *slog.Logger

	mu     sync.Mutex
	conn   *remoting.Client
	target string // conn's address, or the next to dial
	next   int    // index in addrs to try when target fails
}

// NewClient makes a client of the controllers at addrs. secret is the
// cluster secret every request is signed with (nil: unsigned, which only a
// controller without a secret accepts, from loopback).
func NewClient(addrs []string, secret []byte, logger *slog.Logger) *Client {
	if logger == nil {
		logger = slog.Default()
	}
	c := &Client{addrs: addrs, logger: logger}
	if secret != nil {
		// An invalid secret is the configuration's error, reported at
		// load; without a key the controller refuses, naming the cause.
		if k, err := clusterauth.NewKeyFor(secret, KeyPurpose); err == nil {
			c.key = k
		} else {
			logger.Error("controller client: cluster secret unusable; requests go unsigned", "err", err)
		}
	}
	return c
}

// Heartbeat tells the leader the broker is alive (registering it on first
// use) and returns its group's state.
func (c *Client) Heartbeat(ctx context.Context, hb Heartbeat) (GroupState, error) {
	var gs GroupState
	err := c.call(ctx, CodeHeartbeat, hb, &gs)
	return gs, err
}

// AlterInSync sets group's in-sync set (replica ids; the master is always
// in it). Only the current master of the current epoch may: another gets
// an error matching ErrFencedEpoch.
func (c *Client) AlterInSync(ctx context.Context, group string, masterID, epoch int64, inSync []int64) (GroupState, error) {
	var gs GroupState
	err := c.call(ctx, CodeAlterInSync, alterRequest{Group: group, MasterID: masterID, Epoch: epoch, InSync: inSync}, &gs)
	return gs, err
}

// Groups is every group's state, sorted by name.
func (c *Client) Groups(ctx context.Context) ([]GroupState, error) {
	var a groupsAnswer
	err := c.call(ctx, CodeGetGroups, nil, &a)
	return a.Groups, err
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	return nil
}

// call sends one request to the leader, finding it, until ctx ends. An
// answer other than success or "not the leader" is returned as a
// *remoting.Error.
func (c *Client) call(ctx context.Context, code int16, body, out any) error {
	if len(c.addrs) == 0 {
		return fmt.Errorf("controller: no controller addresses (controller.addrs)")
	}
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		payload = b
	}
	var lastErr error
	tried := 0
	for {
		if err := ctx.Err(); err != nil {
			if lastErr != nil {
				return fmt.Errorf("controller: %w (last: %v)", err, lastErr)
			}
			return fmt.Errorf("controller: %w", err)
		}
		if tried >= len(c.addrs) {
			tried = 0
			select {
			case <-ctx.Done():
				continue
			case <-time.After(roundPause):
			}
		}
		conn, addr, err := c.connect(ctx)
		if err != nil {
			lastErr = err
			tried++
			c.failed(addr, nil)
			continue
		}
		req := remoting.NewRequest(code, nil, payload)
		if c.key != nil {
			if err := c.key.Sign(req, time.Now()); err != nil {
				return err
			}
		}
		actx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := conn.Invoke(actx, req)
		cancel()
		if err != nil {
			lastErr = fmt.Errorf("%s: %w", addr, err)
			tried++
			c.failed(addr, conn)
			continue
		}
		switch resp.Code {
		case remoting.Success:
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(resp.Body, out); err != nil {
				return fmt.Errorf("controller %s: answer: %w", addr, err)
			}
			return nil
		case CodeNotLeader:
			lastErr = fmt.Errorf("%s: not the leader", addr)
			tried++
			if hint := resp.Ext(FieldLeaderAddr); hint != "" && hint != addr {
				c.follow(hint)
			} else {
				c.failed(addr, nil)
			}
		default:
			return fmt.Errorf("controller %s: %w", addr, remoting.ResponseError(resp))
		}
	}
}

// connect returns the connection to the current target, dialing it.
func (c *Client) connect(ctx context.Context) (*remoting.Client, string, error) {
	c.mu.Lock()
	if c.target == "" {
		c.target = c.addrs[c.next%len(c.addrs)]
		c.next++
	}
	addr := c.target
	if conn := c.conn; conn != nil && conn.Err() == nil {
		c.mu.Unlock()
		return conn, addr, nil
	}
	c.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	conn, err := remoting.Dial(dctx, addr)
	cancel()
	if err != nil {
		return nil, addr, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.target != addr: // another call moved on meanwhile
		conn.Close()
		return nil, addr, fmt.Errorf("controller %s: another call chose %s meanwhile", addr, c.target)
	case c.conn != nil && c.conn.Err() == nil: // another call dialed it too
		conn.Close()
		return c.conn, addr, nil
	}
	if c.conn != nil {
		c.conn.Close()
	}
	c.conn = conn
	return conn, addr, nil
}

// failed drops addr as the target (and conn, when it is the current one):
// the next call tries the next address of the list.
func (c *Client) failed(addr string, conn *remoting.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	if c.target == addr {
		c.target = ""
		if c.conn != nil {
			c.conn.Close()
			c.conn = nil
		}
	}
}

// follow makes addr, the leader a follower named, the target.
func (c *Client) follow(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.target == addr {
		return
	}
	c.target = addr
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
