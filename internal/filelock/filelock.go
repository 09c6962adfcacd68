// Package filelock holds an exclusive advisory lock on a file, between
// processes and between goroutines of one process: what serialises
// migrations of one SQLite file and keeps two `onboard dev` off one data
// directory. On Unix it is flock(2), which the kernel drops when the process
// dies, so a crash leaves no stale lock behind; elsewhere it locks nothing.
package filelock

import (
	"errors"
	"fmt"
	"os"
)

// ErrLocked is what TryLock returns when another holder has the lock.
var ErrLocked = errors.New("locked by another process")

// Lock takes the lock on path (created if missing), waiting for another
// holder to let go. unlock releases it; the file stays, empty.
func Lock(path string) (unlock func(), err error) { return lock(path, true) }

// TryLock takes the lock on path if no one holds it, and otherwise returns
// an error wrapping ErrLocked at once.
func TryLock(path string) (unlock func(), err error) { return lock(path, false) }

func lock(path string, wait bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f, wait); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}
