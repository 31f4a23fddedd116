//go:build !linux

package rawio

import "errors"

// haveFdatasync: SyncData calls fsync here, which makes durable what
// fdatasync does and more.
const haveFdatasync = false

func fdatasync(int) error { return errors.ErrUnsupported }
