package onnx

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// A model and its external-data file are written by two renames, which no file system makes
// atomic together. Save therefore ties them: the data file ends with a trailer holding its
// content id, and the model's metadata_props (DataIDsKey) lists the id it expects for each
// data file it refers to. Load (and runtime sessions) compare the two, so a pair torn by a kill
// between the renames, or a data file replaced underneath (a shared base re-pruned), is an
// error and never a model computing garbage. Files written by other tools carry no ids and
// are not checked.

// DataIDsKey is the metadata_props key of the data-file ids: a JSON object from location to id.
const DataIDsKey = "shears.external_data_ids"

// dataIDMagic starts the trailer: magic, 32 hex digits, newline (49 bytes). onnxruntime and
// the onnx python package read tensors at their offsets and ignore bytes after them.
const dataIDMagic = "\nshears-data-id:"

const dataIDTrailer = len(dataIDMagic) + 32 + 1

// ErrTornSave is returned (wrapped) when a model's data file is not the one it was saved with.
var ErrTornSave = fmt.Errorf("data file does not belong to this model")

// readDataID returns the id in the trailer of the data file at path ("" when it has none).
func readDataID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return dataIDOf(f)
}

// dataIDOf is readDataID on an open file.
func dataIDOf(f *os.File) (string, error) {
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.Size() < int64(dataIDTrailer) {
		return "", nil
	}
	buf := make([]byte, dataIDTrailer)
	if _, err := f.ReadAt(buf, fi.Size()-int64(dataIDTrailer)); err != nil {
		return "", err
	}
	if string(buf[:len(dataIDMagic)]) != dataIDMagic || buf[dataIDTrailer-1] != '\n' {
		return "", nil
	}
	return string(buf[len(dataIDMagic) : dataIDTrailer-1]), nil
}

// withDataIDs returns props without any previous DataIDsKey entry, plus one for ids when it is
// not empty (a new slice; props is not modified).
func withDataIDs(props []*onnxpb.StringStringEntryProto, ids map[string]string) []*onnxpb.StringStringEntryProto {
	var out []*onnxpb.StringStringEntryProto
	for _, p := range props {
		if p.GetKey() != DataIDsKey {
			out = append(out, p)
		}
	}
	if len(ids) > 0 {
		b, _ := json.Marshal(ids) // map keys are sorted: deterministic
		out = append(out, kv(DataIDsKey, string(b)))
	}
	return out
}

// CheckDataIDs checks the data files a model's DataIDsKey metadata value names, relative to
// dir: each must end with the id the model expects. An empty value checks nothing.
func CheckDataIDs(dir, value string) error {
	if value == "" {
		return nil
	}
	var ids map[string]string
	if err := json.Unmarshal([]byte(value), &ids); err != nil {
		return fmt.Errorf("metadata %s is not a JSON object of ids: %v", DataIDsKey, err)
	}
	locs := make([]string, 0, len(ids))
	for loc := range ids {
		locs = append(locs, loc)
	}
	sort.Strings(locs)
	for _, loc := range locs {
		if err := checkLocation(loc); err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(loc))
		got, err := readDataID(p)
		if err != nil {
			return fmt.Errorf("data file %s: %w", p, err)
		}
		if got != ids[loc] {
			if got == "" {
				got = "none"
			}
			return fmt.Errorf("%w: %s has id %s, the model was saved with %s (a save interrupted between writing "+
				"the data and the model, or a data file replaced since); write the model again", ErrTornSave, p, got, ids[loc])
		}
	}
	return nil
}

// dataIDs is the DataIDsKey value of a model's metadata ("" when absent).
func dataIDs(mp *onnxpb.ModelProto) string {
	for _, p := range mp.GetMetadataProps() {
		if p.GetKey() == DataIDsKey {
			return p.GetValue()
		}
	}
	return ""
}

// externalLocation is the location entry of an external tensor.
func externalLocation(t *onnxpb.TensorProto) string {
	for _, e := range t.GetExternalData() {
		if e.GetKey() == "location" {
			return e.GetValue()
		}
	}
	return ""
}

// FaultHook, when set (by fault-injection tests only), is called at named points of a save;
// a non-nil error stops the save there, leaving the files as a kill at that point would.
var FaultHook func(point string) error

func fault(point string) error {
	if FaultHook == nil {
		return nil
	}
	return FaultHook(point)
}

// Files lists the files m is read from: the model file (when loaded from one) and every
// external-data file its tensors refer to (a shared base's included), as absolute paths,
// without duplicates. Commands compare their outputs against it so that an output never
// overwrites one of its own inputs.
func (m *Model) Files() []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		if abs, err := filepath.Abs(p); err == nil && !seen[abs] {
			seen[abs] = true
			out = append(out, abs)
		}
	}
	if m.Path != "" {
		add(m.Path)
	}
	forEachTensor(m.Graph(), func(t *onnxpb.TensorProto) {
		if isExternal(t) {
			if loc := externalLocation(t); loc != "" {
				add(filepath.Join(m.externalDir(), filepath.FromSlash(loc)))
			}
		}
	})
	return out
}

// DataID returns the content id in the trailer of the external-data file at path ("" when it
// has none: not written by shears).
func DataID(path string) (string, error) { return readDataID(path) }
