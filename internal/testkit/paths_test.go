package testkit

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fetch downloads a public file into .cache once, checks its sha256, and refuses a damaged copy.
func TestFetchChecksSHA256(t *testing.T) {
	t.Setenv("SHEARS_NO_FETCH", "")
	body := []byte("stories260K stand-in bytes")
	sum := sha256.Sum256(body)
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	defer srv.Close()
	root := t.TempDir()
	f := Remote{URL: srv.URL + "/m.bin", SHA256: hex.EncodeToString(sum[:])}
	p, err := fetch(root, "models/x/m.bin", f)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(root, ".cache", "x", "m.bin") {
		t.Errorf("fetched to %s", p)
	}
	if got, _ := os.ReadFile(p); string(got) != string(body) {
		t.Errorf("content %q", got)
	}
	if _, err := fetch(root, "models/x/m.bin", f); err != nil || hits != 1 {
		t.Errorf("second fetch: %v, %d downloads (want the cached copy)", err, hits)
	}
	if err := os.WriteFile(p, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := fetch(root, "models/x/m.bin", f); err == nil || !strings.Contains(err.Error(), "damaged copy") {
		t.Errorf("damaged copy: %v", err)
	}
	if _, err := fetch(root, "models/x/n.bin", Remote{URL: srv.URL + "/missing", SHA256: f.SHA256}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing remote: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, ".cache", "x", "n.bin")); !os.IsNotExist(err) {
		t.Error("a failed download left a file")
	}
}
