//go:build !unix

package dirlock

import "os"

// tryLock is a no-op where flock is not available: the directory is not protected.
func tryLock(f *os.File) error { return nil }
