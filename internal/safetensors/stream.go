package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shears-ml/shears/onnx"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Info is one tensor's header entry, with its data located in the file: bytes [Begin, End) of
// the whole file (header included), ready for a ReadAt or a file-to-file copy.
type Info struct {
	Name       string
	DType      string
	Shape      []int64
	Begin, End int64
}

// Size is the tensor's byte length.
func (i Info) Size() int64 { return i.End - i.Begin }

// Reader is an open safetensors file whose header has been read and checked against the file's
// size; tensor bytes are read on demand, so a file larger than memory costs only its header.
type Reader struct {
	Path     string
	Tensors  []Info            // in file order
	Metadata map[string]string // the "__metadata__" entry (nil when absent)
	f        *os.File
	index    map[string]int
}

// Open reads and checks the header of the safetensors file at path. Every tensor's offsets must
// lie within the file, be contiguous and non-overlapping, and match its dtype × shape; the
// error names the file and the tensor.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	r, err := open(f, path)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

func open(f *os.File, path string) (*Reader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	var lb [8]byte
	if n, err := io.ReadFull(f, lb[:]); err != nil {
		return nil, fmt.Errorf("safetensors: truncated header length (%d of 8 bytes)", n)
	}
	n := binary.LittleEndian.Uint64(lb[:])
	if n > maxHeader || n > uint64(size-8) {
		return nil, fmt.Errorf("safetensors: truncated header: its length %d does not fit the %d-byte file", n, size)
	}
	h := make([]byte, n)
	if _, err := io.ReadFull(f, h); err != nil {
		return nil, fmt.Errorf("safetensors: read header: %w", err)
	}
	infos, meta, err := parseHeader(h, size-8-int64(n))
	if err != nil {
		return nil, err
	}
	r := &Reader{Path: path, Metadata: meta, f: f, index: map[string]int{}}
	for i := range infos {
		infos[i].Begin += 8 + int64(n)
		infos[i].End += 8 + int64(n)
		r.index[infos[i].Name] = i
	}
	r.Tensors = infos
	return r, nil
}

// parseHeader decodes and checks a header against dataLen bytes of tensor data; offsets in the
// result are relative to the data (the end of the header), tensors in offset order.
func parseHeader(h []byte, dataLen int64) ([]Info, map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(h, &raw); err != nil {
		return nil, nil, fmt.Errorf("safetensors: header is not a JSON object: %w", err)
	}
	var meta map[string]string
	var infos []Info
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("safetensors: __metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		var e entry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: bad header entry: %w", name, err)
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if lo < 0 || hi < lo || hi > dataLen {
			return nil, nil, fmt.Errorf("safetensors: tensor %q: data_offsets [%d, %d) run past the end of the file (%d data bytes)", name, lo, hi, dataLen)
		}
		if err := checkSize(name, e.DType, e.Shape, hi-lo); err != nil {
			return nil, nil, err
		}
		infos = append(infos, Info{Name: name, DType: e.DType, Shape: e.Shape, Begin: lo, End: hi})
	}
	// Contiguous and non-overlapping, covering the data exactly (what the reference checks).
	sort.Slice(infos, func(i, j int) bool {
		if infos[i].Begin != infos[j].Begin {
			return infos[i].Begin < infos[j].Begin
		}
		return infos[i].End < infos[j].End
	})
	var at int64
	for _, t := range infos {
		if t.Begin != at {
			return nil, nil, fmt.Errorf("safetensors: tensor %q starts at %d, expected %d (gap or overlap)", t.Name, t.Begin, at)
		}
		at = t.End
	}
	if at != dataLen {
		return nil, nil, fmt.Errorf("safetensors: tensors cover %d of %d data bytes", at, dataLen)
	}
	return infos, meta, nil
}

// Info returns the header entry of the tensor called name.
func (r *Reader) Info(name string) (Info, bool) {
	i, ok := r.index[name]
	if !ok {
		return Info{}, false
	}
	return r.Tensors[i], true
}

// Read returns the bytes of the tensor called name.
func (r *Reader) Read(name string) ([]byte, error) {
	t, ok := r.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", r.Path, name)
	}
	b := make([]byte, t.Size())
	if _, err := r.f.ReadAt(b, t.Begin); err != nil && !(err == io.EOF && len(b) == 0) {
		return nil, fmt.Errorf("%s: tensor %q: %w", r.Path, name, err)
	}
	return b, nil
}

// Close closes the file; it is safe to call twice.
func (r *Reader) Close() error {
	if r == nil || r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// IndexFile is the name of the index of a sharded checkpoint, as Hugging Face writes it.
const IndexFile = "model.safetensors.index.json"

// SingleFile is the name of an unsharded checkpoint.
const SingleFile = "model.safetensors"

// Set is a checkpoint's tensors across one file or several shards.
type Set struct {
	Dir    string
	Files  []*Reader // the shards in index order (one for a single file)
	where  map[string]*Reader
	tensor map[string]Info
}

// OpenDir opens the checkpoint in dir: model.safetensors.index.json and the shards it names
// when the index exists, model.safetensors otherwise. Only headers are read. An index must name
// shards inside dir that exist, and every tensor it maps must be in its shard.
func OpenDir(dir string) (*Set, error) {
	s := &Set{Dir: dir, where: map[string]*Reader{}, tensor: map[string]Info{}}
	idxPath := filepath.Join(dir, IndexFile)
	b, err := os.ReadFile(idxPath)
	if errors.Is(err, os.ErrNotExist) {
		single := filepath.Join(dir, SingleFile)
		r, err := Open(single)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("safetensors: %s: neither %s nor %s", dir, SingleFile, IndexFile)
			}
			return nil, err
		}
		s.add(r)
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", idxPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors: %s: empty or missing weight_map", idxPath)
	}
	names := make([]string, 0, len(idx.WeightMap))
	for n := range idx.WeightMap {
		names = append(names, n)
	}
	sort.Strings(names)
	shards := map[string]*Reader{}
	for _, n := range names {
		file := idx.WeightMap[n]
		r, ok := shards[file]
		if !ok {
			if file == "" || strings.ContainsAny(file, `/\`) || file == "." || file == ".." {
				s.Close()
				return nil, fmt.Errorf("safetensors: %s: tensor %q: shard %q must be a file name in the checkpoint's folder", idxPath, n, file)
			}
			r, err = Open(filepath.Join(dir, file))
			if err != nil {
				s.Close()
				if errors.Is(err, os.ErrNotExist) {
					return nil, fmt.Errorf("safetensors: %s: tensor %q: shard %s is missing", idxPath, n, filepath.Join(dir, file))
				}
				return nil, err
			}
			shards[file] = r
			s.Files = append(s.Files, r)
		}
		t, ok := r.Info(n)
		if !ok {
			s.Close()
			return nil, fmt.Errorf("safetensors: %s: tensor %q is not in its shard %s", idxPath, n, r.Path)
		}
		s.where[n], s.tensor[n] = r, t
	}
	sort.Slice(s.Files, func(i, j int) bool { return s.Files[i].Path < s.Files[j].Path })
	return s, nil
}

func (s *Set) add(r *Reader) {
	s.Files = append(s.Files, r)
	for _, t := range r.Tensors {
		s.where[t.Name], s.tensor[t.Name] = r, t
	}
}

// Info returns the tensor called name and the file holding it.
func (s *Set) Info(name string) (Info, *Reader, bool) {
	t, ok := s.tensor[name]
	return t, s.where[name], ok
}

// Names lists every tensor, sorted.
func (s *Set) Names() []string {
	n := make([]string, 0, len(s.tensor))
	for k := range s.tensor {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Bytes is the total size of the tensors.
func (s *Set) Bytes() int64 {
	var n int64
	for _, t := range s.tensor {
		n += t.Size()
	}
	return n
}

// Close closes every shard.
func (s *Set) Close() error {
	var errs []error
	for _, r := range s.Files {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// Spec describes a tensor to write with WriteStream: its bytes come from a callback.
type Spec struct {
	Name  string
	DType string
	Shape []int64
}

// WriteStream writes a safetensors file of the tensors specs (laid out in name order, as Write
// does) without holding them in memory: fill is called once per tensor, in that order, and must
// write exactly its dtype × shape bytes to w. The file is written atomically (temporary file,
// sync, rename), so a failure leaves nothing behind.
func WriteStream(path string, specs []Spec, metadata map[string]string, fill func(s Spec, w io.Writer) error) error {
	ss := slices.Clone(specs)
	sort.Slice(ss, func(i, j int) bool { return ss[i].Name < ss[j].Name })
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	lens := make([]int64, len(ss))
	for i, t := range ss {
		if t.Name == "" || t.Name == "__metadata__" {
			return fmt.Errorf("safetensors: %s: tensor %d has the reserved or empty name %q", path, i, t.Name)
		}
		if i > 0 && ss[i-1].Name == t.Name {
			return fmt.Errorf("safetensors: %s: tensor %q given twice", path, t.Name)
		}
		n, err := byteLen(t.Name, t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[t.Name] = entry{DType: t.DType, Shape: shape, Offsets: [2]int64{off, off + n}}
		lens[i] = n
		off += n
	}
	h, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("safetensors: %s: header: %w", path, err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	f, err := onnx.CreatePending(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := &countWriter{w: bw}
	var lb [8]byte
	binary.LittleEndian.PutUint64(lb[:], uint64(len(h)))
	w.Write(lb[:])
	w.Write(h)
	for i, t := range ss {
		start := w.n
		if err = fill(t, w); err != nil {
			return fmt.Errorf("write %s: tensor %q: %w", path, t.Name, err)
		}
		if w.err != nil {
			return fmt.Errorf("write %s: %w", path, w.err)
		}
		if got := w.n - start; got != lens[i] {
			return fmt.Errorf("write %s: tensor %q: %d bytes written, want %d", path, t.Name, got, lens[i])
		}
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Commit(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func byteLen(name, dtype string, shape []int64) (int64, error) {
	es, ok := sizes[dtype]
	if !ok {
		return 0, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", name, dtype)
	}
	n := int64(es)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > math.MaxInt64/d) {
			return 0, fmt.Errorf("safetensors: tensor %q: bad shape %v", name, shape)
		}
		n *= d
	}
	return n, nil
}

// countWriter counts bytes and keeps the first error.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}
