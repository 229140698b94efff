package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/shears-ml/shears/onnx"
)

// InputDigest is one input file of a run and its content digest: "sha256:…" of the bytes, or
// "id:…" for an external-data file that carries onnx's content id (written by shears; reading
// 49 bytes instead of hashing gigabytes).
type InputDigest struct {
	Role   string `json:"role"`
	Path   string `json:"path"`
	Digest string `json:"digest"`
}

// fileDigest is the digest of the file at path.
func fileDigest(path string) (string, error) {
	if id, err := onnx.DataID(path); err != nil {
		return "", err
	} else if id != "" {
		return "id:" + id, nil
	}
	return sha256File(path)
}

// sha256File is "sha256:" and the hex digest of the file's bytes (run digests and stage
// manifests).
func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// modelDigests lists the digests of the super-network's files (the header, its data files and
// a shared base's data file).
func modelDigests(m *onnx.Model) ([]InputDigest, error) {
	var out []InputDigest
	for i, f := range m.Files() {
		role := "base data (shared by the super-network)"
		switch {
		case i == 0 && m.Path != "":
			role = "super-network"
		case isOwnData(m, f):
			role = "super-network data"
		}
		d, err := fileDigest(f)
		if err != nil {
			return nil, err
		}
		out = append(out, InputDigest{Role: role, Path: f, Digest: d})
	}
	return out, nil
}

// isOwnData reports whether f is the super-network's own data file (named after it).
func isOwnData(m *onnx.Model, f string) bool {
	return m.Path != "" && filepath.Base(f) == filepath.Base(m.Path)+".data"
}

// inputDigests are the digests of a run's inputs: the super-network's files, then the data
// and the tokenizer (when given).
func inputDigests(m *onnx.Model, dataPath, tokPath string) ([]InputDigest, error) {
	out, err := modelDigests(m)
	if err != nil {
		return nil, err
	}
	for _, in := range []struct{ role, path string }{{"data", dataPath}, {"tokenizer", tokPath}} {
		if in.path == "" {
			continue
		}
		d, err := fileDigest(in.path)
		if err != nil {
			return nil, err
		}
		out = append(out, InputDigest{Role: in.role, Path: in.path, Digest: d})
	}
	return out, nil
}

// checkDigests compares the digests recorded in run.json with the current ones, for the roles
// both list; the error names each changed file and what to do.
func checkDigests(recorded, now []InputDigest) error {
	cur := map[string]InputDigest{}
	for _, d := range now {
		cur[d.Path] = d
	}
	var changed []string
	for _, r := range recorded {
		c, ok := cur[r.Path]
		if !ok {
			continue // not checked in this context (e.g. the training data for export)
		}
		if c.Digest != r.Digest {
			changed = append(changed, fmt.Sprintf("the %s %s (was %s, now %s)", r.Role, r.Path, short(r.Digest), short(c.Digest)))
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("inputs changed since the run started: %v; restore them or start a new run", changed)
	}
	return nil
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19] + "…"
	}
	return d
}

// checkModelInputs re-hashes the super-network's files recorded in run.json (not the data or
// tokenizer, which search and export do not read) and compares them.
func checkModelInputs(recorded []InputDigest) error {
	var now []InputDigest
	for _, r := range recorded {
		if r.Role == "data" || r.Role == "tokenizer" {
			continue
		}
		d, err := fileDigest(r.Path)
		if err != nil {
			return fmt.Errorf("the %s: %w", r.Role, err)
		}
		now = append(now, InputDigest{Role: r.Role, Path: r.Path, Digest: d})
	}
	return checkDigests(recorded, now)
}
