package testkit

// Test inputs: the repository root and the ../shared folder beside it (with the public files
// among them fetched, checksummed, into .cache/ when ../shared is absent).

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

// Shared returns ../shared/<rel> (relative to the repository root). When that file is absent
// and it is one of the public files in Fetchable, it comes from .cache/ instead (where
// scripts/demo.sh also puts it), downloaded once from its public location and checked against
// its sha256; the test is skipped, saying why, only when neither works (no ../shared and no
// network). SHEARS_NO_FETCH=1 turns the download off.
func Shared(t testing.TB, rel string) string {
	t.Helper()
	p, why := FindShared(t, rel)
	if p == "" {
		t.Skip(why)
	}
	return p
}

// FindShared is Shared without the skip: the path, or "" and why there is none.
func FindShared(t testing.TB, rel string) (string, string) {
	t.Helper()
	root := RepoRoot(t)
	p := filepath.Join(root, "..", "shared", rel)
	if _, err := os.Stat(p); err == nil {
		return p, ""
	}
	f, ok := Fetchable[rel]
	if !ok {
		return "", fmt.Sprintf("shared input missing: %s (tests read ../shared; see the README)", p)
	}
	local, err := fetch(root, rel, f)
	if err != nil {
		return "", fmt.Sprintf("shared input missing: %s, and %v", p, err)
	}
	return local, ""
}

// A Remote is a public file: where it lives and its sha256.
type Remote struct{ URL, SHA256 string }

// Fetchable are the ../shared files with a public home (the stories260K model and tokenizer of
// karpathy/tinyllamas, the same location and checksums as scripts/demo.sh).
var Fetchable = map[string]Remote{
	"models/stories260K/stories260K.bin": {"https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin",
		"b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"},
	"models/stories260K/tok512.bin": {"https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin",
		"037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312"},
}

// fetchMu serialises downloads within a test binary (packages run in separate processes; the
// rename makes concurrent ones safe).
var fetchMu sync.Mutex

// fetch returns .cache/<rel without "models/"> under root, downloading f when absent, and
// checks its sha256 either way (a damaged or different copy is an error, not a skip-free pass).
func fetch(root, rel string, f Remote) (string, error) {
	fetchMu.Lock()
	defer fetchMu.Unlock()
	dst := filepath.Join(root, ".cache", strings.TrimPrefix(rel, "models/"))
	if _, err := os.Stat(dst); err != nil {
		if os.Getenv("SHEARS_NO_FETCH") != "" {
			return "", fmt.Errorf("%s is absent and SHEARS_NO_FETCH is set", dst)
		}
		if err := download(f.URL, dst); err != nil {
			return "", fmt.Errorf("could not fetch %s: %v", f.URL, err)
		}
	}
	if err := checkSHA(dst, f.SHA256); err != nil {
		return "", err
	}
	return dst, nil
}

func download(url, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, resp.Body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

func checkSHA(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s has sha256 %s, want %s (a different or damaged copy; delete it to fetch again)", path, got, want)
	}
	return nil
}
