// Package testpath finds test inputs: the repository root and the ../shared folder beside it.
// It imports nothing of ours, so every package's tests can use it (runtime's included).
package testpath

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot is the folder holding go.mod, found by walking up from the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testpath: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Shared returns ../shared/<rel> (relative to the repository root), skipping the test when
// the file is absent.
func Shared(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), "..", "shared", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared input missing: %s (tests read ../shared; see the README)", p)
	}
	return p
}
