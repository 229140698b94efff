package testkit

// transformers.js (npm @huggingface/transformers), the JavaScript client the tests load exported
// model folders with, run through Node and the scripts in scripts/transformersjs.
// scripts/fetch-transformersjs.sh (run by "make test") installs it into .cache/transformers-js;
// tests skip, saying why, when Node or the install is missing.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TransformersJSDir returns the transformers.js install folder, skipping the test when Node or the install
// is missing.
func TransformersJSDir(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("transformers.js test skipped: node is not on PATH (apt-get install nodejs)")
	}
	dir := filepath.Join(RepoRoot(t), ".cache", "transformers-js")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@huggingface", "transformers", "package.json")); err != nil {
		t.Skipf("transformers.js test skipped: %s is not installed (run scripts/fetch-transformersjs.sh; it needs npm and the npm registry)", dir)
	}
	return dir
}

// RunTransformersJS runs scripts/transformersjs/SCRIPT with the install folder and args, feeding stdin, and
// returns its standard output; a failure fails the test with Node's standard error.
func RunTransformersJS(t testing.TB, script string, stdin []byte, args ...string) []byte {
	t.Helper()
	dir := TransformersJSDir(t)
	path := filepath.Join(RepoRoot(t), "scripts", "transformersjs", script)
	cmd := exec.Command("node", append([]string{path, dir}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s %v: %v\n%s", script, args, err, errb.String())
	}
	return out.Bytes()
}
