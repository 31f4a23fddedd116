// Package coretest opens a real core over a real store of its own, for
// the tests of front-ends and bridges: they reach the store only through
// the core, as the code they test does.
package coretest

import (
	"errors"
	"sync"
	"testing"

	"github.com/ferrymq/ferry/core"
	"github.com/ferrymq/ferry/storage"
)

// Options configure a store and the core over it.
type Options struct {
	// SyncFlush makes a publish durable only once on disk.
	SyncFlush bool
	// Core is the core's configuration.
	Core core.Config
}

// Open opens a store on dir and a core over it. close closes the core,
// then the store, once however often it is called; dir can be opened
// again after it (a restart).
func Open(dir string, o Options) (b *core.Broker, close func() error, err error) {
	opts := storage.Options{SegmentSize: 16 << 20, Logger: o.Core.Logger}
	if o.SyncFlush {
		opts.FlushMode = storage.FlushSync
	}
	st, err := storage.Open(dir, opts)
	if err != nil {
		return nil, nil, err
	}
	if b, err = core.New(st, o.Core); err != nil {
		st.Close()
		return nil, nil, err
	}
	return b, sync.OnceValue(func() error { return errors.Join(b.Close(), st.Close()) }), nil
}

// New opens a core over a store in a new temporary directory of t; both
// are closed when t ends (the core first).
func New(t testing.TB, cfg core.Config) *core.Broker {
	t.Helper()
	b, closeAll, err := Open(t.TempDir(), Options{Core: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeAll(); err != nil {
			t.Error(err)
		}
	})
	return b
}
