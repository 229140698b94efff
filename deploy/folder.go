package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/shears-ml/shears/onnx"
)

// Folder is a model folder being written: the stage saves the graph at ModelPath (with
// SaveOptions), then Finish writes the rest and moves the folder into place. Until then the
// files live in a hidden sibling of the destination, which Abort removes.
type Folder struct {
	dir, tmp string
	force    bool
	closed   bool
}

// Begin checks the destination and makes the temporary folder. An existing dir that is not
// empty is refused unless force (then Finish replaces it); an existing file is always refused.
func Begin(dir string, force bool) (*Folder, error) {
	if dir == "" {
		return nil, fmt.Errorf("deploy: no output folder given")
	}
	if err := checkDest(dir, force); err != nil {
		return nil, err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("deploy: output folder %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(filepath.Clean(dir))+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("deploy: output folder %s: %w", dir, err)
	}
	// MkdirTemp makes 0700; the folder is for sharing.
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("deploy: output folder %s: %w", dir, err)
	}
	if err := os.Mkdir(filepath.Join(tmp, folderModelSubdir), 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("deploy: output folder %s: %w", dir, err)
	}
	return &Folder{dir: filepath.Clean(dir), tmp: tmp, force: force}, nil
}

func checkDest(dir string, force bool) error {
	st, err := os.Stat(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deploy: output folder %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("deploy: output folder %s exists and is a file, not a folder", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("deploy: output folder %s: %w", dir, err)
	}
	if len(ents) > 0 && !force {
		names := make([]string, 0, 3)
		for i := 0; i < len(ents) && i < 3; i++ {
			names = append(names, ents[i].Name())
		}
		more := ""
		if len(ents) > 3 {
			more = fmt.Sprintf(", … %d entries", len(ents))
		}
		return fmt.Errorf("deploy: output folder %s exists and is not empty (%s%s); use --force to replace it", dir, strings.Join(names, ", "), more)
	}
	return nil
}

// Dir is the destination folder.
func (f *Folder) Dir() string { return f.dir }

// ModelPath is where the stage writes the graph (inside the temporary folder).
func (f *Folder) ModelPath() string { return filepath.Join(f.tmp, folderModelSubdir, folderModelFile) }

// SaveOptions adapts a stage's save options to the folder: external data (when there is any)
// goes to model.onnx_data beside the graph, and never refers to another model's data file,
// so the folder stands alone.
func SaveOptions(so onnx.SaveOptions) onnx.SaveOptions {
	so.DataFile = folderDataFile
	so.ShareExternal = false
	return so
}

// Abort removes the temporary folder; the destination is untouched. Safe after Finish.
func (f *Folder) Abort() {
	if f != nil && !f.closed {
		f.closed = true
		os.RemoveAll(f.tmp)
	}
}

// commit moves the finished temporary folder into place, replacing an existing destination
// (which checkDest allowed): the old one is renamed aside first and removed last, so a failed
// rename puts it back.
func (f *Folder) commit() error {
	if err := checkDest(f.dir, f.force); err != nil { // it may have changed while the stage ran
		return err
	}
	var old string
	if _, err := os.Stat(f.dir); err == nil {
		o, err := os.MkdirTemp(filepath.Dir(f.dir), "."+filepath.Base(f.dir)+".old-")
		if err != nil {
			return fmt.Errorf("deploy: output folder %s: %w", f.dir, err)
		}
		os.Remove(o)
		if err := os.Rename(f.dir, o); err != nil {
			return fmt.Errorf("deploy: output folder %s: move the old folder aside: %w", f.dir, err)
		}
		old = o
	}
	if err := os.Rename(f.tmp, f.dir); err != nil {
		if old != "" {
			os.Rename(old, f.dir)
		}
		return fmt.Errorf("deploy: output folder %s: %w", f.dir, err)
	}
	f.closed = true
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// writeFile writes one file of the folder atomically (onnx.WriteFileAtomic).
func (f *Folder) writeFile(name string, data []byte) error {
	if err := onnx.WriteFileAtomic(filepath.Join(f.tmp, filepath.FromSlash(name)), data); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	return nil
}

// files lists the temporary folder's files (slash paths, sorted) for the report.
func (f *Folder) files() []string {
	var out []string
	filepath.WalkDir(f.tmp, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(f.tmp, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// Resolve maps a model folder to its graph and tokenizer: DIR gives DIR/onnx/model.onnx and
// DIR/tokenizer.json ("" when the folder has none). Any other path is returned as the model.
func Resolve(path string) (model, tokenizer string) {
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		return path, ""
	}
	model = filepath.Join(path, folderModelSubdir, folderModelFile)
	if _, err := os.Stat(filepath.Join(path, "tokenizer.json")); err == nil {
		tokenizer = filepath.Join(path, "tokenizer.json")
	}
	return model, tokenizer
}
