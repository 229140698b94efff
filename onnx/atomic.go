package onnx

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PendingFile is an output being written: a temporary file in its destination's folder, named
// DEST.tmp-PID-RANDOM, that becomes DEST only on Commit. It is the project's one way of writing
// a file without ever leaving half of it under the final name. The pid in the name lets a
// later write of the same destination remove the leftovers of a process that died (kill -9,
// power loss) while keeping those of one still running.
type PendingFile struct {
	*os.File
	dest string
	done bool
}

// CreatePending starts writing dest. It first removes temporaries of dest left by processes
// that are no longer running.
func CreatePending(dest string) (*PendingFile, error) {
	RemoveStaleTemps(dest)
	f, err := os.CreateTemp(filepath.Dir(dest), tempPrefix(dest)+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return nil, err
	}
	return &PendingFile{File: f, dest: dest}, nil
}

func tempPrefix(dest string) string { return filepath.Base(dest) + ".tmp-" }

// finish flushes the file to disk and closes it with the permissions of an ordinary output;
// rename then puts it in place. Commit does both; Save calls them apart so that a model and
// its data file are both on disk before either is renamed.
func (p *PendingFile) finish() error {
	if err := p.Chmod(0o644); err != nil {
		return err
	}
	if err := p.File.Sync(); err != nil {
		return err
	}
	return p.Close()
}

func (p *PendingFile) rename() error {
	if err := os.Rename(p.Name(), p.dest); err != nil {
		return err
	}
	p.done = true
	return nil
}

// Commit syncs, closes and renames the file to its destination, then syncs the folder so the
// rename is durable.
func (p *PendingFile) Commit() error {
	if err := p.finish(); err != nil {
		return err
	}
	if err := p.rename(); err != nil {
		return err
	}
	syncDir(filepath.Dir(p.dest))
	return nil
}

// Abort closes and removes the temporary file unless it was committed. It is safe to defer
// right after CreatePending.
func (p *PendingFile) Abort() {
	if p == nil || p.done {
		return
	}
	p.Close()
	os.Remove(p.Name())
}

// WriteFileAtomic writes b to path through a PendingFile: readers see the old file or the new
// one, never a part.
func WriteFileAtomic(path string, b []byte) (err error) {
	p, err := CreatePending(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer p.Abort()
	if _, err := p.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := p.Commit(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// RemoveStaleTemps removes the temporaries of dest (DEST.tmp-PID-*) whose writing process is
// no longer running. Best effort: errors are ignored.
func RemoveStaleTemps(dest string) {
	dir, prefix := filepath.Dir(dest), tempPrefix(dest)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		pidStr, _, ok := strings.Cut(name[len(prefix):], "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		os.Remove(filepath.Join(dir, name))
	}
}

// syncDir makes renames in dir durable; best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
