package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FileName is the lock file created in a locked directory.
const FileName = ".lock"

// ErrBusy is returned (wrapped) when another process holds the lock.
var ErrBusy = errors.New("in use by another process")

// Lock is a held directory lock.
type Lock struct {
	f *os.File
}

// Acquire locks dir (which must exist) without waiting. When another process (or another
// Acquire in this one) holds it, the error wraps ErrBusy and names the holder's pid and what
// it said it was doing.
func Acquire(dir, what string) (*Lock, error) {
	p := filepath.Join(dir, FileName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := tryLock(f); err != nil {
		b, _ := os.ReadFile(p)
		f.Close()
		holder := strings.TrimSpace(string(b))
		if holder == "" {
			holder = "unknown pid"
		}
		return nil, fmt.Errorf("%s is %w (%s); wait for it to finish or use another directory", dir, ErrBusy, holder)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte("pid "+strconv.Itoa(os.Getpid())+": "+what+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release unlocks (closing the file releases the flock). Safe on nil and more than once.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close()
	l.f = nil
}

// RemoveAll deletes dir unless another process holds its lock (then the error wraps ErrBusy
// and names the holder): a changed recipe must never delete a run that is still training.
// A missing dir is not an error.
func RemoveAll(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	l, err := Acquire(dir, "removing")
	if err != nil {
		return err
	}
	defer l.Release()
	return os.RemoveAll(dir)
}
