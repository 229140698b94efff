package onnx

import (
	"errors"
	"fmt"
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

	if opts.Transform != nil && opts.TransformInto != nil {
		return fail(fmt.Errorf("both Transform and TransformInto are set"))
	}
	pool := &bufPool{}
	defer pool.close()
	var dw *dataWriter
	defer func() {
		if dw != nil {
			dw.abort() // a no-op once renamed
		}
	}()
	writer := func() (*dataWriter, error) {
		if dw == nil {
			var err error
			if dw, err = newDataWriter(dataPath, pool); err != nil {
				return nil, err
			}
		}
		return dw, nil
	}
	ids := map[string]string{} // data file location → id the output expects
	outInits := make([]*onnxpb.TensorProto, len(inits))
	ahead := &mapAhead{}
	defer ahead.release()
	for i, t := range inits {
		n, lerr := tensorByteLen(t)
		if lerr != nil && !isExternal(t) {
			outInits[i] = t // no raw form (strings): kept as is, never transformed
			continue
		}
		transform, into := opts.Transform, opts.TransformInto
		if (transform != nil || into != nil) && opts.Touches != nil && !opts.Touches(t.GetName()) {
			transform, into = nil, nil // untouched: written as is (external ones copied file to file)
		}
		touched := transform != nil || into != nil
		outDT, retyped := DataType(t), false
		if opts.Retype != nil {
			if dt, ok := opts.Retype(t.GetName(), t); ok && dt != outDT {
				if !touched || ElemSize(dt) == 0 || lerr != nil {
					return fail(fmt.Errorf("retype tensor %q to %s: needs a Transform, a fixed-size type and valid dims", t.GetName(), dt))
				}
				outDT, retyped = dt, true
				n = NumElements(t.GetDims()) * int64(ElemSize(dt))
			}
		}
		if opts.ShareExternal && isExternal(t) && !touched && !retyped {
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
		if !toExt && !touched && !isExternal(t) {
			outInits[i] = t // unchanged, shared with m (the output proto is never modified)
			continue
		}
		if toExt && !touched && isExternal(t) {
			// External to external, unchanged: the kernel copies the bytes file to file
			// (copy_file_range), without a trip through a Go buffer.
			w, err := writer()
			if err != nil {
				return fail(err)
			}
			off, err := m.copyExternal(t, n, w)
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
		if into != nil {
			m.mapNext(ahead, inits[i+1:], opts)
		}
		raw, pooled, err := m.tensorBytes(t, n, toExt, transform, into, ahead, retyped, pool)
		if err != nil {
			return fail(err)
		}
		out := &onnxpb.TensorProto{}
		shallowCopy(out, t)
		if retyped {
			out.DataType = int32Ptr(int32(outDT))
		}
		out.FloatData, out.DoubleData, out.Int32Data, out.Int64Data, out.Uint64Data = nil, nil, nil, nil, nil
		if toExt {
			w, err := writer()
			if err != nil {
				pool.put(raw)
				return fail(err)
			}
			off, err := w.write(raw, pooled)
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
		if err := dw.wait(); err != nil {
			return fail(fmt.Errorf("write data file %s: %w", dataPath, err))
		}
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

// mapNext starts mapping, in the background, the first of rest that the TransformInto will
// read from an external file (as the loop in Save decides: external, touched, not shared).
func (m *Model) mapNext(ahead *mapAhead, rest []*onnxpb.TensorProto, opts SaveOptions) {
	for _, t := range rest {
		if !isExternal(t) {
			continue
		}
		if opts.Touches != nil && !opts.Touches(t.GetName()) {
			continue // copied file to file, or shared: not mapped
		}
		if want, err := tensorByteLen(t); err == nil && want > 0 {
			ahead.start(m, t, want)
		}
		return
	}
}

// tensorBytes returns the bytes Save writes for initializer t (n of them when retyped): its own
// bytes, or those transform or into make of them. For the data file (toExt) they come in a
// buffer of pool (pooled true), which the data file's writer gives back once written; tensors
// kept inline get bytes of their own.
func (m *Model) tensorBytes(t *onnxpb.TensorProto, n int64, toExt bool,
	transform func(string, *onnxpb.TensorProto, []byte) ([]byte, error),
	into func(string, *onnxpb.TensorProto, []byte, []byte) error,
	ahead *mapAhead, retyped bool, pool *bufPool) (b []byte, pooled bool, err error) {
	name := t.GetName()
	if into != nil {
		var raw []byte
		mappedFrom := "" // the file raw is a mapping of
		if isExternal(t) {
			want, err := tensorByteLen(t)
			if err != nil {
				return nil, false, fmt.Errorf("onnx: %w", err)
			}
			r, took := ahead.take(t, want)
			if !took {
				r.b, r.unmap, r.ok, r.err = m.mapExternal(t, want)
			}
			mapped, unmap, ok, err := r.b, r.unmap, r.ok, r.err
			switch {
			case err != nil:
				return nil, false, err
			case ok:
				raw = mapped
				mappedFrom = m.externalPath(t)
				defer unmap()
				if err := fault("save-mapped " + mappedFrom); err != nil {
					return nil, false, err
				}
			default:
				raw = pool.get(int(want))
				defer pool.put(raw)
				if _, err := m.readExternalBuf(t, want, raw); err != nil {
					return nil, false, err
				}
			}
		} else if raw, err = m.RawData(t); err != nil {
			return nil, false, err
		}
		if !retyped {
			n = int64(len(raw))
		}
		var dst []byte
		if toExt {
			dst = pool.get(int(n))
		} else {
			dst = make([]byte, n)
		}
		var err error
		if ferr := CatchFault(func() { err = into(name, t, raw, dst) }); ferr != nil {
			err = ferr
		}
		if err != nil {
			pool.put(dst)
			var fe *FaultError
			if errors.As(err, &fe) && mappedFrom != "" && within(fe.Addr, raw) {
				return nil, false, fmt.Errorf("transform tensor %q: its data in %s could not be read: "+
					"the file was truncated (or its disk failed) while being read; nothing was written", name, mappedFrom)
			}
			return nil, false, fmt.Errorf("transform tensor %q: %w", name, err)
		}
		return dst, toExt, nil
	}
	raw, err := m.RawData(t)
	if err != nil {
		return nil, false, err
	}
	if transform != nil {
		if !isExternal(t) {
			raw = append([]byte(nil), raw...) // the transform must not see m's own bytes
		}
		nraw, err := transform(name, t, raw)
		if err != nil {
			return nil, false, fmt.Errorf("transform tensor %q: %w", name, err)
		}
		want := int64(len(raw))
		if retyped {
			want = n
		}
		if int64(len(nraw)) != want {
			return nil, false, fmt.Errorf("transform tensor %q: returned %d bytes, want %d", name, len(nraw), want)
		}
		raw = nraw
	}
	if !toExt {
		return raw, false, nil
	}
	// A copy into an aligned buffer costs less than the page-cache copy a buffered write makes
	// (the writer sends pooled buffers to the disk directly), and the caller's bytes are free
	// at once.
	dst := pool.get(len(raw))
	copy(dst, raw)
	return dst, true, nil
}
