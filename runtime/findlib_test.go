package runtime

// In-package: these reach the unexported findLibrary. The other tests are in package runtime_test,
// since the testkit they use imports runtime.

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindLibraryOrder(t *testing.T) {
	tmp := t.TempDir()
	lib := filepath.Join(tmp, ".ort", "libonnxruntime.so.1")
	if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(tmp, "other.so")
	if err := os.WriteFile(other, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(tmp, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	// Walking up from a subfolder finds the project library.
	if got, err := findLibrary("", "", []string{deep}); err != nil || got != lib {
		t.Fatalf("walk up: got %q, %v; want %q", got, err, lib)
	}
	// The variable beats the project library, the flag beats both.
	if got, err := findLibrary("", other, []string{deep}); err != nil || got != other {
		t.Fatalf("env: got %q, %v; want %q", got, err, other)
	}
	if got, err := findLibrary(lib, other, []string{deep}); err != nil || got != lib {
		t.Fatalf("flag: got %q, %v; want %q", got, err, lib)
	}
	// An explicit path that does not exist is reported, not skipped.
	_, err := findLibrary(filepath.Join(tmp, "nope.so"), other, []string{deep})
	if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "--ort-lib="+filepath.Join(tmp, "nope.so")) {
		t.Fatalf("missing flag path: %v", err)
	}
}

func TestFindLibraryMissingMessage(t *testing.T) {
	// No candidates at all: one line that says what was tried and what to do.
	_, err := findLibrary("", "", []string{t.TempDir()})
	if !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("got %v, want ErrNoLibrary", err)
	}
	msg := err.Error()
	for _, want := range []string{"onnxruntime library not found", "--ort-lib", "$ONNXRUNTIME_LIB", ".ort/libonnxruntime.so.1", `"make ort"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message is not one line: %q", msg)
	}

	// Through the exported function: the variable names a missing file, in a temp working directory.
	missing := filepath.Join(t.TempDir(), "missing.so")
	t.Setenv(EnvLibrary, missing)
	t.Chdir(t.TempDir())
	_, err = FindLibrary("")
	if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), `"make ort"`) {
		t.Fatalf("FindLibrary with $%s=%s: %v", EnvLibrary, missing, err)
	}
}
