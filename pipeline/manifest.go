package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// manifestVersion changes when what a stage writes changes, so old work folders rerun.
const manifestVersion = 1

// Manifest is a finished stage's record (STAGE/manifest.json in the work directory).
type Manifest struct {
	Version int               `json:"version"`
	Stage   string            `json:"stage"`
	Hash    string            `json:"hash"` // of the stage, its options and its inputs
	ID      string            `json:"id"`   // of this execution: what downstream stages hash
	Options any               `json:"options"`
	Inputs  map[string]string `json:"inputs"` // input → content hash or upstream stage id
	Outputs []string          `json:"outputs"`
	Seconds float64           `json:"seconds"`
	Done    time.Time         `json:"finished"`
	Result  json.RawMessage   `json:"result"`
}

const (
	manifestFile = "manifest.json"
	pendingFile  = "pending" // the hash of a started, unfinished stage
)

// stageHash hashes what decides a stage's outputs.
func stageHash(stage string, options any, inputs map[string]string) (string, error) {
	b, err := json.Marshal(struct {
		V       int               `json:"v"`
		Stage   string            `json:"stage"`
		Options any               `json:"options"`
		Inputs  map[string]string `json:"inputs"`
	}{manifestVersion, stage, options, inputs})
	if err != nil {
		return "", fmt.Errorf("stage %s: hash options: %w", stage, err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// fileHashes memoises content hashes of input files by path, size and modification time.
type fileHashes map[string]string

func (fh fileHashes) of(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", path, fi.Size(), fi.ModTime().UnixNano())
	if h, ok := fh[key]; ok {
		return h, nil
	}
	sum, err := sha256File(path)
	if err != nil {
		return "", err
	}
	fh[key] = sum
	return sum, nil
}

// readManifest returns the stage's manifest, or nil when there is none.
func readManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it to rerun the stage)", filepath.Join(dir, manifestFile), err)
	}
	return &m, nil
}
