// Package testkit holds what tests across the repository share: finding ../shared inputs
// (skipping with a message that names the missing path) and starting onnxruntime.
package testkit

import (
	"testing"

	"github.com/shears-ml/shears/internal/testpath"
	"github.com/shears-ml/shears/runtime"
)

// RepoRoot is the folder holding go.mod.
func RepoRoot(t testing.TB) string { return testpath.RepoRoot(t) }

// Shared returns ../shared/<rel>, skipping the test when the file is absent.
func Shared(t testing.TB, rel string) string { return testpath.Shared(t, rel) }

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
