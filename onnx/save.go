package onnx

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path/filepath"
	"strconv"

	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Save writes the model to path. It never leaves a half-written output: the model and its data
// file are written to temporary files in the destination folder, synced, then renamed into
// place; on error the temporaries are removed. Weights stream one tensor at a time from their
// source (inline or the model's external file) through opts.Transform to the output, so saving
// a model larger than memory works. m itself is not modified; saving over the file m was loaded
// from works (m keeps reading its original data through the handles it holds open), but a
// Marshal of m afterwards refers to the data file's new contents.
func (m *Model) Save(path string, opts SaveOptions) (err error) {
	if m == nil || m.Proto == nil || m.Proto.GetGraph() == nil {
		return fmt.Errorf("onnx: save %s: no model graph", path)
	}
	fail := func(e error) error { return fmt.Errorf("onnx: save %s: %w", path, e) }
	threshold := opts.ExternalThreshold
	if threshold <= 0 {
		threshold = 1024
	}
	dataName := opts.DataFile
	if dataName == "" {
		dataName = filepath.Base(path) + ".data"
	}
	if err := checkLocation(dataName); err != nil {
		return fail(fmt.Errorf("data file: %w", err))
	}
	dir := filepath.Dir(path)
	dataPath := filepath.Join(dir, filepath.FromSlash(dataName))
	if filepath.Clean(dataPath) == filepath.Clean(path) {
		return fail(fmt.Errorf("data file %q is the model file itself", dataName))
	}

	g := m.Proto.GetGraph()
	inits := g.GetInitializer()
	var total int64
	for _, t := range inits {
		if n, err := tensorByteLen(t); err == nil {
			total += n
		}
	}
	external := opts.ExternalData || total > maxInlineBytes

	var dw *dataWriter
	defer func() {
		if dw != nil {
			dw.p.Abort()
		}
	}()
	ids := map[string]string{} // data file location → id the output expects
	outInits := make([]*onnxpb.TensorProto, len(inits))
	for i, t := range inits {
		n, lerr := tensorByteLen(t)
		if lerr != nil && !isExternal(t) {
			outInits[i] = t // no raw form (strings): kept as is, never transformed
			continue
		}
		transform := opts.Transform
		if transform != nil && opts.Touches != nil && !opts.Touches(t.GetName()) {
			transform = nil // untouched: written as is (external ones copied file to file)
		}
		outDT, retyped := DataType(t), false
		if opts.Retype != nil {
			if dt, ok := opts.Retype(t.GetName(), t); ok && dt != outDT {
				if transform == nil || ElemSize(dt) == 0 || lerr != nil {
					return fail(fmt.Errorf("retype tensor %q to %s: needs a Transform, a fixed-size type and valid dims", t.GetName(), dt))
				}
				outDT, retyped = dt, true
				n = NumElements(t.GetDims()) * int64(ElemSize(dt))
			}
		}
		if opts.ShareExternal && isExternal(t) && transform == nil && !retyped {
			out, err := m.sharedRef(t, dir, dataPath)
			if err != nil {
				return fail(err)
			}
			if loc := externalLocation(out); ids[loc] == "" {
				if id, _ := readDataID(filepath.Join(dir, filepath.FromSlash(loc))); id != "" {
					ids[loc] = id
				}
			}
			outInits[i] = out
			continue
		}
		toExt := external && n >= threshold
		if !toExt && transform == nil && !isExternal(t) {
			outInits[i] = t // unchanged, shared with m (the output proto is never modified)
			continue
		}
		if toExt && transform == nil && isExternal(t) {
			// External to external, unchanged: the kernel copies the bytes file to file
			// (copy_file_range), without a trip through a Go buffer.
			if dw == nil {
				if dw, err = newDataWriter(dataPath); err != nil {
					return fail(err)
				}
			}
			off, err := m.copyExternal(t, n, dw)
			if err != nil {
				return fail(fmt.Errorf("write data file %s: %w", dataPath, err))
			}
			out := &onnxpb.TensorProto{}
			shallowCopy(out, t)
			out.ExternalData = []*onnxpb.StringStringEntryProto{
				kv("location", filepath.ToSlash(dataName)),
				kv("offset", strconv.FormatInt(off, 10)),
				kv("length", strconv.FormatInt(n, 10)),
			}
			outInits[i] = out
			continue
		}
		raw, err := m.RawData(t)
		if err != nil {
			return fail(err)
		}
		if transform != nil {
			if !isExternal(t) {
				raw = append([]byte(nil), raw...) // the transform must not see m's own bytes
			}
			nraw, err := transform(t.GetName(), t, raw)
			if err != nil {
				return fail(fmt.Errorf("transform tensor %q: %w", t.GetName(), err))
			}
			want := int64(len(raw))
			if retyped {
				want = n
			}
			if int64(len(nraw)) != want {
				return fail(fmt.Errorf("transform tensor %q: returned %d bytes, want %d", t.GetName(), len(nraw), want))
			}
			raw = nraw
		}
		out := &onnxpb.TensorProto{}
		shallowCopy(out, t)
		if retyped {
			out.DataType = int32Ptr(int32(outDT))
		}
		out.FloatData, out.DoubleData, out.Int32Data, out.Int64Data, out.Uint64Data = nil, nil, nil, nil, nil
		if toExt {
			if dw == nil {
				if dw, err = newDataWriter(dataPath); err != nil {
					return fail(err)
				}
			}
			off, err := dw.write(raw)
			if err != nil {
				return fail(fmt.Errorf("write data file %s: %w", dataPath, err))
			}
			out.RawData = nil
			out.ExternalData = []*onnxpb.StringStringEntryProto{
				kv("location", filepath.ToSlash(dataName)),
				kv("offset", strconv.FormatInt(off, 10)),
				kv("length", strconv.Itoa(len(raw))),
			}
			loc := onnxpb.TensorProto_EXTERNAL
			out.DataLocation = &loc
		} else {
			out.RawData = raw
			out.ExternalData = nil
			out.DataLocation = nil
		}
		outInits[i] = out
	}

	nodes, err := m.inlineNodeTensors(g.GetNode())
	if err != nil {
		return fail(err)
	}
	og := &onnxpb.GraphProto{}
	shallowCopy(og, g)
	og.Initializer = outInits
	og.Node = nodes
	if dw != nil {
		ids[filepath.ToSlash(dataName)] = dw.id()
	}
	om := &onnxpb.ModelProto{}
	shallowCopy(om, m.Proto)
	om.Graph = og
	om.MetadataProps = withDataIDs(m.Proto.GetMetadataProps(), ids)
	buf, err := proto.MarshalOptions{Deterministic: true}.Marshal(om)
	if err != nil {
		return fail(fmt.Errorf("marshal: %w", err))
	}

	mf, err := CreatePending(path)
	if err != nil {
		return fail(err)
	}
	defer mf.Abort()
	if _, err := mf.Write(buf); err != nil {
		return fail(err)
	}
	if err := mf.finish(); err != nil {
		return fail(err)
	}
	if dw != nil {
		if err := dw.finish(); err != nil {
			return fail(fmt.Errorf("write data file %s: %w", dataPath, err))
		}
		if err := dw.p.rename(); err != nil {
			return fail(err)
		}
		// A kill here leaves the new data under the old header: the ids in the header and
		// the data file's trailer differ, and Load refuses the pair.
		if err := fault("save-between-renames"); err != nil {
			return fail(err)
		}
	}
	if err := mf.rename(); err != nil {
		return fail(err)
	}
	syncDir(dir)
	return nil
}

// maxInlineBytes is MaxInlineBytes, a variable so that tests can exercise the forced
// externalisation without writing 1.8 GB.
var maxInlineBytes int64 = MaxInlineBytes

func kv(k, v string) *onnxpb.StringStringEntryProto {
	return &onnxpb.StringStringEntryProto{Key: &k, Value: &v}
}

// shallowCopy sets every populated field of src on dst (same message type), sharing
// repeated fields and sub-messages rather than copying them, so that the output proto of a
// Save costs no weight bytes.
func shallowCopy(dst, src proto.Message) {
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	s.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		d.Set(fd, v)
		return true
	})
	d.SetUnknown(s.GetUnknown())
}

// inlineNodeTensors returns nodes, with every node that holds an external tensor (in an
// attribute or a subgraph) replaced by a clone whose tensors carry their bytes inline: only
// main-graph initializers are written to the data file.
func (m *Model) inlineNodeTensors(nodes []*onnxpb.NodeProto) ([]*onnxpb.NodeProto, error) {
	var out []*onnxpb.NodeProto
	for i, n := range nodes {
		has := false
		forEachTensor(&onnxpb.GraphProto{Node: []*onnxpb.NodeProto{n}}, func(t *onnxpb.TensorProto) {
			has = has || isExternal(t)
		})
		if !has {
			continue
		}
		if out == nil {
			out = append([]*onnxpb.NodeProto(nil), nodes...)
		}
		c := proto.Clone(n).(*onnxpb.NodeProto)
		var errs []error
		forEachTensor(&onnxpb.GraphProto{Node: []*onnxpb.NodeProto{c}}, func(t *onnxpb.TensorProto) {
			if !isExternal(t) {
				return
			}
			raw, err := m.RawData(t)
			if err != nil {
				errs = append(errs, fmt.Errorf("node %q: %w", n.GetName(), err))
				return
			}
			t.RawData, t.ExternalData, t.DataLocation = raw, nil, nil
		})
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		out[i] = c
	}
	if out == nil {
		return nodes, nil
	}
	return out, nil
}

// dataWriter appends tensors to a temporary data file at ExternalAlign-aligned offsets,
// hashing what it writes into the file's id.
type dataWriter struct {
	p   *PendingFile
	w   *bufio.Writer
	off int64
	h   hash.Hash
}

func newDataWriter(dataPath string) (*dataWriter, error) {
	p, err := CreatePending(dataPath)
	if err != nil {
		return nil, err
	}
	return &dataWriter{p: p, w: bufio.NewWriterSize(p, 1<<20), h: sha256.New()}, nil
}

var zeroPad [ExternalAlign]byte

// write pads to the next aligned offset, writes b and returns the offset it starts at.
func (d *dataWriter) write(b []byte) (int64, error) {
	if r := d.off % ExternalAlign; r != 0 {
		if _, err := d.w.Write(zeroPad[:ExternalAlign-r]); err != nil {
			return 0, err
		}
		d.off += ExternalAlign - r
	}
	off := d.off
	if _, err := d.w.Write(b); err != nil {
		return 0, err
	}
	d.h.Write(b)
	d.off += int64(len(b))
	return off, nil
}

// copyExternal appends n bytes of external tensor t to d (aligned) by a file-to-file copy and
// returns the offset they start at.
func (m *Model) copyExternal(t *onnxpb.TensorProto, n int64, d *dataWriter) (int64, error) {
	r, err := parseExternal(t)
	if err != nil {
		return 0, err
	}
	// The handle m holds (not the path): if the file was replaced since Load, m still copies
	// the bytes it was loaded with, as RawData reads them. Seeking it is safe: reads elsewhere
	// use ReadAt.
	src, err := m.openExternal(r.location)
	if err != nil {
		return 0, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	e := m.files()
	e.copyMu.Lock() // one seek-and-copy at a time on the shared handle
	defer e.copyMu.Unlock()
	if fi, err := src.Stat(); err != nil || r.offset > fi.Size() || n > fi.Size()-r.offset {
		return 0, fmt.Errorf("tensor %q: external data offset %d + length %d runs past the end of %q", t.GetName(), r.offset, n, r.location)
	}
	if _, err := src.Seek(r.offset, io.SeekStart); err != nil {
		return 0, err
	}
	if r := d.off % ExternalAlign; r != 0 {
		if _, err := d.w.Write(zeroPad[:ExternalAlign-r]); err != nil {
			return 0, err
		}
		d.off += ExternalAlign - r
	}
	if err := d.w.Flush(); err != nil {
		return 0, err
	}
	off := d.off
	// The bytes are not read here, so the id covers where they come from instead: the source
	// file's own id when it has one, else its name, size and modification time.
	srcID, _ := dataIDOf(src)
	if srcID == "" {
		if fi, err := src.Stat(); err == nil {
			srcID = fmt.Sprintf("%s %d %d", src.Name(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	fmt.Fprintf(d.h, "copy %s %d %d\n", srcID, r.offset, n)
	copied, err := d.p.ReadFrom(&io.LimitedReader{R: src, N: n})
	if err != nil {
		return 0, err
	}
	if copied != n {
		return 0, fmt.Errorf("tensor %q: copied %d of %d bytes", t.GetName(), copied, n)
	}
	d.off += n
	return off, nil
}

// id is the data file's content id: a hash of the tensors written (and of the sources of
// those copied).
func (d *dataWriter) id() string { return hex.EncodeToString(d.h.Sum(nil)[:16]) }

// finish appends the id trailer and syncs the file.
func (d *dataWriter) finish() error {
	if _, err := d.w.WriteString(dataIDMagic + d.id() + "\n"); err != nil {
		return err
	}
	if err := d.w.Flush(); err != nil {
		return err
	}
	return d.p.finish()
}

// CanShareExternal reports whether a Save of m to path with ShareExternal can refer to every
// external data file of m (each must lie in path's folder or below it); the error names the
// first file that cannot be shared. A model without external data can always be shared.
func (m *Model) CanShareExternal(path string) error {
	dir := filepath.Dir(path)
	var first error
	forEachTensor(m.Graph(), func(t *onnxpb.TensorProto) {
		if first == nil && isExternal(t) {
			_, first = m.sharedLocation(t, dir)
		}
	})
	return first
}

// sharedLocation is the location of t's data file relative to dir, the output's folder.
func (m *Model) sharedLocation(t *onnxpb.TensorProto, dir string) (string, error) {
	r, err := parseExternal(t)
	if err != nil {
		return "", err
	}
	src, err := filepath.Abs(filepath.Join(m.externalDir(), filepath.FromSlash(r.location)))
	if err != nil {
		return "", err
	}
	adir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(adir, src)
	if err == nil {
		rel = filepath.ToSlash(rel)
		err = checkLocation(rel)
	}
	if err != nil {
		return "", fmt.Errorf("share external data of tensor %q: its file %s is not inside the output's folder %s "+
			"(write the output next to the base's data, or copy the weights)", t.GetName(), src, adir)
	}
	return rel, nil
}

// sharedRef is the output tensor of an external initializer kept in its source file: a shallow
// copy with the location rewritten relative to the output's folder.
func (m *Model) sharedRef(t *onnxpb.TensorProto, dir, dataPath string) (*onnxpb.TensorProto, error) {
	loc, err := m.sharedLocation(t, dir)
	if err != nil {
		return nil, err
	}
	if filepath.Clean(filepath.Join(dir, filepath.FromSlash(loc))) == filepath.Clean(dataPath) {
		return nil, fmt.Errorf("tensor %q: the output's data file %s is the shared base data file; choose another DataFile",
			t.GetName(), dataPath)
	}
	out := &onnxpb.TensorProto{}
	shallowCopy(out, t)
	out.ExternalData = nil
	for _, e := range t.GetExternalData() {
		if e.GetKey() == "location" {
			e = kv("location", loc)
		}
		out.ExternalData = append(out.ExternalData, e)
	}
	return out, nil
}
