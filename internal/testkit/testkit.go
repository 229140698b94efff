// Package testkit holds what tests across the repository share: finding ../shared inputs
// (skipping with a message that names the missing path) and starting onnxruntime.
package testkit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/runtime"
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
			t.Fatal("testkit: go.mod not found above the working directory")
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

// ORT initialises onnxruntime, skipping the test when the library cannot be found.
func ORT(t testing.TB) {
	t.Helper()
	lib, err := runtime.FindLibrary("")
	if err != nil {
		t.Skipf("onnxruntime not available: %v", err)
	}
	if err := runtime.Init(lib); err != nil {
		t.Fatalf("init onnxruntime %s: %v", lib, err)
	}
}
