package onnx

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// externalFiles holds the external-data files of one model, opened on first use and kept
// open until Close, so that reading a tensor costs one ReadAt and a model rewritten in place by
// Save keeps reading its original bytes.
type externalFiles struct {
	mu     sync.Mutex
	copyMu sync.Mutex          // held by Save's file-to-file copies, which seek the handles
	files  map[string]*os.File // by cleaned location
	closed bool
}

// extRef is a parsed external_data entry.
type extRef struct {
	location string
	offset   int64
	length   int64 // -1 when the entry gives none: the rest of the file
}

// parseExternal reads and checks t's external_data keys. Locations must stay inside the
// model's folder: absolute paths and ".." components are refused.
func parseExternal(t *onnxpb.TensorProto) (extRef, error) {
	r := extRef{length: -1}
	for _, kv := range t.GetExternalData() {
		switch kv.GetKey() {
		case "location":
			r.location = kv.GetValue()
		case "offset", "length":
			v, err := strconv.ParseInt(kv.GetValue(), 10, 64)
			if err != nil || v < 0 {
				return r, fmt.Errorf("tensor %q: external data %s %q is not a non-negative integer", t.GetName(), kv.GetKey(), kv.GetValue())
			}
			if kv.GetKey() == "offset" {
				r.offset = v
			} else {
				r.length = v
			}
		}
	}
	if err := checkLocation(r.location); err != nil {
		return r, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	return r, nil
}

// checkLocation refuses external-data paths that could leave the model's folder.
func checkLocation(loc string) error {
	if loc == "" {
		return fmt.Errorf("external data has no location")
	}
	if strings.ContainsRune(loc, 0) {
		return fmt.Errorf("external data location %q contains a NUL byte", loc)
	}
	if filepath.IsAbs(loc) || strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, `\`) ||
		(len(loc) >= 2 && loc[1] == ':') {
		return fmt.Errorf("external data location %q is absolute; it must be relative to the model's folder", loc)
	}
	for _, part := range strings.FieldsFunc(loc, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return fmt.Errorf("external data location %q contains \"..\"; it must stay inside the model's folder", loc)
		}
	}
	return nil
}

// externalDir is the folder external locations resolve against.
func (m *Model) externalDir() string {
	if m.Dir == "" {
		return "."
	}
	return m.Dir
}

// externalPath is the path of external tensor t's data file ("" when its reference is bad).
func (m *Model) externalPath(t *onnxpb.TensorProto) string {
	r, err := parseExternal(t)
	if err != nil {
		return ""
	}
	return filepath.Join(m.externalDir(), filepath.FromSlash(r.location))
}

// checkExternalRef validates one external tensor without reading it: location, declared
// length against dims, and offset+length against the file's size (a stat, not a read).
func (m *Model) checkExternalRef(t *onnxpb.TensorProto, sizes map[string]int64) error {
	r, err := parseExternal(t)
	if err != nil {
		return err
	}
	want, err := tensorByteLen(t)
	if err != nil {
		return err
	}
	if r.length >= 0 && r.length != want {
		return fmt.Errorf("tensor %q: external data length %d does not match dims %v of %s (%d bytes)",
			t.GetName(), r.length, t.GetDims(), DataType(t), want)
	}
	size, ok := sizes[r.location]
	if !ok {
		fi, err := os.Stat(filepath.Join(m.externalDir(), filepath.FromSlash(r.location)))
		if err != nil {
			return fmt.Errorf("tensor %q: external data file: %w", t.GetName(), err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("tensor %q: external data location %q is not a regular file", t.GetName(), r.location)
		}
		if err := m.checkInsideFolder(r.location); err != nil {
			return fmt.Errorf("tensor %q: %w", t.GetName(), err)
		}
		size = fi.Size()
		sizes[r.location] = size
	}
	if r.offset > size || want > size-r.offset {
		return fmt.Errorf("tensor %q: external data offset %d + length %d runs past the end of %q (%d bytes)",
			t.GetName(), r.offset, want, r.location, size)
	}
	return nil
}

// readExternal reads want bytes of external tensor t, checking its reference again (the file
// may have changed since Load).
func (m *Model) readExternal(t *onnxpb.TensorProto, want int64) ([]byte, error) {
	return m.readExternalBuf(t, want, nil)
}

// readExternalBuf is readExternal into buf when it is not nil (it must hold want bytes).
func (m *Model) readExternalBuf(t *onnxpb.TensorProto, want int64, buf []byte) ([]byte, error) {
	f, r, err := m.externalSpan(t, want)
	if err != nil {
		return nil, err
	}
	if buf == nil {
		buf = make([]byte, want)
	}
	if _, err := f.ReadAt(buf, r.offset); err != nil && !(err == io.EOF && want == 0) {
		return nil, fmt.Errorf("onnx: tensor %q: read external data %q: %w", t.GetName(), r.location, err)
	}
	return buf, nil
}

// mapExternal is readExternal without a copy: the tensor's bytes mapped read-only from its
// file's page cache, valid until unmap is called. ok is false where mapping is not available
// (then read instead); err is a bad reference.
func (m *Model) mapExternal(t *onnxpb.TensorProto, want int64) (b []byte, unmap func(), ok bool, err error) {
	f, r, err := m.externalSpan(t, want)
	if err != nil || want == 0 {
		return nil, nil, false, err
	}
	b, unmap, ok = mapFile(f, r.offset, want)
	return b, unmap, ok, nil
}

// externalSpan checks external tensor t's reference (the file may have changed since Load)
// and returns its open file and the parsed reference.
func (m *Model) externalSpan(t *onnxpb.TensorProto, want int64) (*os.File, extRef, error) {
	r, err := parseExternal(t)
	if err != nil {
		return nil, r, fmt.Errorf("onnx: %w", err)
	}
	if r.length >= 0 && r.length != want {
		return nil, r, fmt.Errorf("onnx: tensor %q: external data length %d does not match dims %v of %s (%d bytes)",
			t.GetName(), r.length, t.GetDims(), DataType(t), want)
	}
	f, err := m.openExternal(r.location)
	if err != nil {
		return nil, r, fmt.Errorf("onnx: tensor %q: %w", t.GetName(), err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, r, fmt.Errorf("onnx: tensor %q: %w", t.GetName(), err)
	}
	if size := fi.Size(); r.offset > size || want > size-r.offset {
		return nil, r, fmt.Errorf("onnx: tensor %q: external data offset %d + length %d runs past the end of %q (%d bytes)",
			t.GetName(), r.offset, want, r.location, size)
	}
	return f, r, nil
}

// extInit guards the lazy creation of Model.ext (a Model may be built as a plain struct).
var extInit sync.Mutex

func (m *Model) files() *externalFiles {
	extInit.Lock()
	defer extInit.Unlock()
	if m.ext == nil {
		m.ext = &externalFiles{}
	}
	return m.ext
}

// openExternal returns the open handle for location, opening it on first use.
func (m *Model) openExternal(loc string) (*os.File, error) {
	e := m.files()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, fmt.Errorf("model is closed")
	}
	if f, ok := e.files[loc]; ok {
		return f, nil
	}
	f, err := os.Open(filepath.Join(m.externalDir(), filepath.FromSlash(loc)))
	if err != nil {
		return nil, fmt.Errorf("open external data: %w", err)
	}
	if e.files == nil {
		e.files = map[string]*os.File{}
	}
	e.files[loc] = f
	return f, nil
}

// Close releases the model's external-data files. It is safe to call more than once; reading
// external data afterwards fails.
func (m *Model) Close() error {
	if m == nil {
		return nil
	}
	e := m.files()
	e.mu.Lock()
	defer e.mu.Unlock()
	var first error
	for _, f := range e.files {
		if err := f.Close(); err != nil && first == nil {
			first = fmt.Errorf("onnx: close external data: %w", err)
		}
	}
	e.files = nil
	e.closed = true
	return first
}

// ReadChunks streams tensor t's raw little-endian bytes to fn in pieces of at most chunk bytes
// (rounded down to whole elements), reusing one buffer: a scan over a multi-GB weight (counting
// zeros, hashing) needs only that buffer. fn must not keep the slice.
func (m *Model) ReadChunks(t *onnxpb.TensorProto, chunk int, fn func([]byte) error) error {
	if t == nil {
		return fmt.Errorf("onnx: read chunks of a nil tensor")
	}
	want, err := tensorByteLen(t)
	if err != nil {
		return fmt.Errorf("onnx: %w", err)
	}
	if es := ElemSize(DataType(t)); es > 0 {
		chunk = max(es, chunk/es*es)
	}
	if !isExternal(t) {
		raw, err := inlineRaw(t, want)
		if err != nil {
			return fmt.Errorf("onnx: %w", err)
		}
		for off := 0; off < len(raw); off += chunk {
			if err := fn(raw[off:min(off+chunk, len(raw))]); err != nil {
				return err
			}
		}
		return nil
	}
	r, err := parseExternal(t)
	if err != nil {
		return fmt.Errorf("onnx: %w", err)
	}
	f, err := m.openExternal(r.location)
	if err != nil {
		return fmt.Errorf("onnx: tensor %q: %w", t.GetName(), err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("onnx: tensor %q: %w", t.GetName(), err)
	}
	if size := fi.Size(); r.offset > size || want > size-r.offset {
		return fmt.Errorf("onnx: tensor %q: external data offset %d + length %d runs past the end of %q (%d bytes)",
			t.GetName(), r.offset, want, r.location, size)
	}
	buf := make([]byte, min(int64(chunk), want))
	for off := int64(0); off < want; {
		n := min(int64(len(buf)), want-off)
		if _, err := f.ReadAt(buf[:n], r.offset+off); err != nil {
			return fmt.Errorf("onnx: tensor %q: read external data %q: %w", t.GetName(), r.location, err)
		}
		if err := fn(buf[:n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// checkInsideFolder refuses an external-data location that a symbolic link takes outside the
// model's folder: the location's text stays inside (checkLocation), but the file read would
// not, and onnxruntime refuses such a file when it opens the model.
func (m *Model) checkInsideFolder(loc string) error {
	dir, err := filepath.EvalSymlinks(m.externalDir())
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(filepath.Join(m.externalDir(), filepath.FromSlash(loc)))
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return fmt.Errorf("external data location %q is a link to %s, outside the model's folder %s "+
			"(onnxruntime refuses it too): copy the file into the folder (cp -L)", loc, real, dir)
	}
	return nil
}
