package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunRecipeErrors: a bad recipe fails before any work, naming the file and the key.
func TestRunRecipeErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("work: w\nmodel: m.onnx\ntokenizer: t.bin\ntrain: {data: d, epcohs: 2}\neval: [{data: h}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, e, code := shears(t, "run", bad)
	if code != 1 || !strings.Contains(e, "bad.yaml") || !strings.Contains(e, "field epcohs not found") {
		t.Errorf("exit %d, stderr %q", code, e)
	}
	_, e, code = shears(t, "run")
	if code != 2 || !strings.Contains(e, "expected RECIPE") {
		t.Errorf("no recipe: exit %d, stderr %q", code, e)
	}
	if _, err := os.Stat(filepath.Join(dir, "w")); err == nil {
		t.Error("a failed recipe created its work directory")
	}
}
