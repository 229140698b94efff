package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
)

// TestMain lets the test binary act as the shears binary in a child process (SHEARS_CLI_CHILD
// set), so fault-injection tests can kill a real process at a chosen point: SHEARS_KILL_AT
// names an onnx save point where the child sends itself SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("SHEARS_CLI_CHILD") == "1" {
		if lim := os.Getenv("SHEARS_FSIZE_LIMIT"); lim != "" {
			// A file-size limit stands in for a full disk: writes past it fail (EFBIG) the
			// way they fail with ENOSPC, instead of the default SIGXFSZ killing the process.
			n, _ := strconv.ParseUint(lim, 10, 64)
			signal.Ignore(syscall.SIGXFSZ)
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
				panic(err)
			}
		}
		if at := os.Getenv("SHEARS_KILL_AT"); at != "" {
			onnx.FaultHook = func(point string) error {
				if point == at {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {} // the signal is on its way
				}
				return nil
			}
		}
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// child starts the CLI in a child process (this test binary) with extra environment entries.
func child(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "SHEARS_CLI_CHILD=1"), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd
}

// runChild runs the CLI in a child process and returns its combined output and exit status
// (-1 with the signal when it was killed).
func runChild(t *testing.T, env []string, args ...string) (string, int, syscall.Signal) {
	t.Helper()
	cmd := child(t, env, args...)
	err := cmd.Run()
	out := cmd.Stdout.(*bytes.Buffer).String()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return out, -1, ws.Signal()
		}
		return out, ee.ExitCode(), 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return out, 0, 0
}

// Issue 14 case 1, end to end: convert killed (SIGKILL) between renaming the new data file and
// renaming the new header. Before, the next command computed with the old header over the new
// weights (perplexity 2.8e25, exit 0); now every reader refuses the pair, naming the data file,
// and the next convert leaves a loadable model and no temporaries.
func TestConvertKilledBetweenRenamesIsRefused(t *testing.T) {
	src := testkit.Synthetic(t, "tiny")
	dir := t.TempDir()
	out := filepath.Join(dir, "c.onnx")
	if _, e, code := shears(t, "convert", src, "-o", out, "--dtype", "fp16"); code != 0 {
		t.Fatalf("convert fp16: %s", e)
	}
	o, code, sig := runChild(t, []string{"SHEARS_KILL_AT=save-between-renames"}, "convert", src, "-o", out, "--dtype", "bf16")
	if sig != syscall.SIGKILL {
		t.Fatalf("the child was not killed (exit %d): %s", code, o)
	}
	_, e, code := shears(t, "inspect", out)
	if code == 0 || !strings.Contains(e, "does not belong to this model") || !strings.Contains(e, "c.onnx.data") {
		t.Fatalf("inspect of the torn pair: exit %d, %s", code, e)
	}
	if _, err := onnx.Load(out); !errors.Is(err, onnx.ErrTornSave) {
		t.Fatalf("onnx.Load of the torn pair: %v", err)
	}
	// The killed child left its header temporary; the next save removes it.
	if tmps, _ := filepath.Glob(out + ".tmp-*"); len(tmps) != 1 {
		t.Fatalf("temporaries after the kill: %v (want the killed header)", tmps)
	}
	if _, e, code := shears(t, "convert", src, "-o", out, "--dtype", "bf16"); code != 0 {
		t.Fatalf("convert again: %s", e)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(tmps) != 0 {
		t.Fatalf("temporaries after the next convert: %v", tmps)
	}
	if r := inspectJSON(t, out); r.Dtypes["BFLOAT16"] == 0 {
		t.Fatalf("repaired model: %+v", r.Dtypes)
	}
}

// A write that fails part way (a full disk; here a file-size limit on the child, so the
// failure is real and not mocked) is an error with a non-zero exit, leaves no temporaries, and
// leaves the previous output as it was, byte for byte.
func TestFailedWriteKeepsThePreviousOutput(t *testing.T) {
	src := testkit.Synthetic(t, "tiny")
	dir := t.TempDir()
	out := filepath.Join(dir, "c.onnx")
	if _, e, code := shears(t, "convert", src, "-o", out, "--dtype", "fp16", "--external-data"); code != 0 {
		t.Fatalf("convert fp16: %s", e)
	}
	before := map[string][]byte{}
	for _, f := range []string{out, out + ".data"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		before[f] = b
	}
	o, code, sig := runChild(t, []string{"SHEARS_FSIZE_LIMIT=65536"}, "convert", src, "-o", out, "--dtype", "bf16", "--external-data")
	if code == 0 || sig != 0 || !strings.Contains(o, "file too large") {
		t.Fatalf("convert past the size limit: exit %d, signal %v: %s", code, sig, o)
	}
	for f, b := range before {
		got, err := os.ReadFile(f)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s changed by the failed convert (err %v)", f, err)
		}
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(tmps) != 0 {
		t.Fatalf("temporaries left by the failed convert: %v", tmps)
	}
	if r := inspectJSON(t, out); r.Dtypes["FLOAT16"] == 0 {
		t.Fatalf("the previous output no longer inspects as fp16: %+v", r.Dtypes)
	}
}
