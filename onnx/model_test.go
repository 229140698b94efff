package onnx

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// rawAll reads every initializer's bytes by name.
func rawAll(t *testing.T, m *Model) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, x := range m.Graph().GetInitializer() {
		b, err := m.RawData(x)
		if err != nil {
			t.Fatal(err)
		}
		out[x.GetName()] = append([]byte(nil), b...)
	}
	return out
}

func sameTensors(t *testing.T, what string, want, got map[string][]byte) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d tensors, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		if !bytes.Equal(w, got[k]) {
			t.Fatalf("%s: tensor %q differs (%d vs %d bytes)", what, k, len(got[k]), len(w))
		}
	}
}

// sameGraphStructure compares everything but the initializers' storage.
func sameGraphStructure(t *testing.T, a, b *Model) {
	t.Helper()
	ga, gb := proto.Clone(a.Graph()).(*onnxpb.GraphProto), proto.Clone(b.Graph()).(*onnxpb.GraphProto)
	ga.Initializer, gb.Initializer = nil, nil
	if !proto.Equal(ga, gb) {
		t.Fatal("graph structure changed across save/load")
	}
	if len(a.Graph().GetInitializer()) != len(b.Graph().GetInitializer()) {
		t.Fatal("initializer count changed")
	}
	for i, x := range a.Graph().GetInitializer() {
		y := b.Graph().GetInitializer()[i]
		if x.GetName() != y.GetName() || x.GetDataType() != y.GetDataType() || !equalDims(x.GetDims(), y.GetDims()) {
			t.Fatalf("initializer %d: %s %v %v vs %s %v %v", i, x.GetName(), x.GetDataType(), x.GetDims(), y.GetName(), y.GetDataType(), y.GetDims())
		}
	}
}

func equalDims(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkAligned asserts every external tensor of m lies at an ExternalAlign multiple and returns
// how many are external.
func checkAligned(t *testing.T, m *Model) int {
	t.Helper()
	n := 0
	for _, x := range m.Graph().GetInitializer() {
		if !isExternal(x) {
			continue
		}
		n++
		r, err := parseExternal(x)
		if err != nil {
			t.Fatal(err)
		}
		if r.offset%ExternalAlign != 0 {
			t.Fatalf("tensor %q at offset %d, not a multiple of %d", x.GetName(), r.offset, ExternalAlign)
		}
	}
	return n
}

func roundTrip(t *testing.T, orig *Model) {
	dir := t.TempDir()
	want := rawAll(t, orig)

	inline := filepath.Join(dir, "inline.onnx")
	if err := orig.Save(inline, SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	m1, err := Load(inline)
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	sameTensors(t, "inline", want, rawAll(t, m1))
	sameGraphStructure(t, orig, m1)
	if n := checkAligned(t, m1); n != 0 {
		t.Fatalf("inline save wrote %d external tensors", n)
	}

	ext := filepath.Join(dir, "sub", "ext.onnx")
	os.Mkdir(filepath.Dir(ext), 0o755)
	if err := m1.Save(ext, SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(ext)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	sameTensors(t, "external", want, rawAll(t, m2))
	sameGraphStructure(t, orig, m2)
	nExt := checkAligned(t, m2)
	bigOnes := 0
	for _, x := range m2.Graph().GetInitializer() {
		n, _ := tensorByteLen(x)
		if (n >= 1024) != isExternal(x) {
			t.Fatalf("tensor %q of %d bytes: external=%v, threshold 1024", x.GetName(), n, isExternal(x))
		}
		if n >= 1024 {
			bigOnes++
		}
	}
	if nExt == 0 || nExt != bigOnes {
		t.Fatalf("%d external tensors, want %d", nExt, bigOnes)
	}
	if _, err := os.Stat(ext + ".data"); err != nil {
		t.Fatalf("data file: %v", err)
	}

	back := filepath.Join(dir, "back.onnx")
	if err := m2.Save(back, SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	m3, err := Load(back)
	if err != nil {
		t.Fatal(err)
	}
	defer m3.Close()
	sameTensors(t, "external→inline", want, rawAll(t, m3))
	sameGraphStructure(t, orig, m3)
	for _, x := range m3.Graph().GetInitializer() {
		if isExternal(x) || len(x.GetExternalData()) != 0 {
			t.Fatalf("tensor %q still external after an inline save", x.GetName())
		}
	}
	// no temporaries left behind
	entries, _ := filepath.Glob(filepath.Join(dir, "*tmp-*"))
	sub, _ := filepath.Glob(filepath.Join(dir, "sub", "*tmp-*"))
	if len(entries)+len(sub) > 0 {
		t.Fatalf("temporary files left: %v %v", entries, sub)
	}
}

func TestRoundTripFixture(t *testing.T) {
	m, err := Load(coreFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(m.Graph().GetInitializer()) < 40 {
		t.Fatalf("fixture has %d initializers", len(m.Graph().GetInitializer()))
	}
	roundTrip(t, m)
}

func TestRoundTripTiny(t *testing.T) {
	m := tcTiny()
	raw := rawAll(t, m)
	// typed storages decode to the right little-endian bytes
	f, err := m.Float32s(m.Initializer("b"))
	if err != nil || len(f) != 16 || f[3] != 3.0/8 {
		t.Fatalf("b = %v, %v", f, err)
	}
	if got := raw["typed_big"][8*5 : 8*6]; !bytes.Equal(got, []byte{18, 0, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("typed_big[5] bytes %v, want 18", got)
	}
	h, err := m.Float32s(m.Initializer("h"))
	if err != nil || h[3] != 1 || h[699] != Float16ToFloat32(Float32ToFloat16(233)) {
		t.Fatalf("h = %v..., %v", h[:4], err)
	}
	roundTrip(t, m)
}

func TestSaveTransformAndOverwriteSelf(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.onnx")
	m := savedTiny(t, p)
	before, _ := m.Float32s(m.Initializer("W"))
	double := scale(2)
	if err := m.Save(p, SaveOptions{ExternalData: true, Transform: double}); err != nil {
		t.Fatal(err)
	}
	// m still reads its original weights through the handle it holds
	still, err := m.Float32s(m.Initializer("W"))
	if err != nil {
		t.Fatal(err)
	}
	b0, _ := m.Float32s(m.Initializer("b"))
	for i := range before {
		if still[i] != before[i] {
			t.Fatalf("m changed by Save: W[%d] %v → %v", i, before[i], still[i])
		}
	}
	n, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	after, _ := n.Float32s(n.Initializer("W"))
	b1, _ := n.Float32s(n.Initializer("b"))
	for i := range before {
		if after[i] != 2*before[i] {
			t.Fatalf("W[%d] = %v, want %v", i, after[i], 2*before[i])
		}
	}
	if b1[5] != 2*b0[5] || b0[5] != 5.0/8 {
		t.Fatalf("inline b[5] = %v (was %v), want doubled", b1[5], b0[5])
	}

	// a transform that fails leaves the previous file and no temporaries
	prev, _ := os.ReadFile(p)
	bad := func(name string, x *onnxpb.TensorProto, raw []byte) ([]byte, error) { return raw[:1], nil }
	err = n.Save(p, SaveOptions{ExternalData: true, Transform: bad})
	if err == nil || !strings.Contains(err.Error(), "returned 1 bytes") || !strings.Contains(err.Error(), p) {
		t.Fatalf("bad transform: %v", err)
	}
	if now, _ := os.ReadFile(p); !bytes.Equal(now, prev) {
		t.Fatal("failed save modified the model file")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*tmp-*")); len(left) > 0 {
		t.Fatalf("temporaries left: %v", left)
	}
}

func TestSaveForcedExternalAndThreshold(t *testing.T) {
	defer func(v int64) { maxInlineBytes = v }(maxInlineBytes)
	maxInlineBytes = 1000 // the tiny model holds more than this
	dir := t.TempDir()
	p := filepath.Join(dir, "forced.onnx")
	m := tcTiny()
	if err := m.Save(p, SaveOptions{DataFile: "weights.bin"}); err != nil {
		t.Fatal(err)
	}
	l, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !isExternal(l.Initializer("W")) || isExternal(l.Initializer("b")) {
		t.Fatal("over MaxInlineBytes: W must be external, b (64 B) inline")
	}
	if loc, _ := parseExternal(l.Initializer("W")); loc.location != "weights.bin" {
		t.Fatalf("location %q", loc.location)
	}
	sameTensors(t, "forced", rawAll(t, m), rawAll(t, l))

	maxInlineBytes = MaxInlineBytes
	q := filepath.Join(dir, "thr.onnx")
	if err := m.Save(q, SaveOptions{ExternalData: true, ExternalThreshold: 1500}); err != nil {
		t.Fatal(err)
	}
	l2, _ := Load(q)
	defer l2.Close()
	for _, x := range l2.Graph().GetInitializer() {
		n, _ := tensorByteLen(x)
		if (n >= 1500) != isExternal(x) {
			t.Fatalf("threshold 1500: %q (%d B) external=%v", x.GetName(), n, isExternal(x))
		}
	}
	if c := checkAligned(t, l2); c != 2 { // W 2048 B and typed_big 1600 B; h (1400 B) stays inline
		t.Fatalf("%d external tensors, want 2", c)
	}
}

// extModel saves the tiny model with external data and returns its path.
func extModel(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "e.onnx")
	if err := tcTiny().Save(p, SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	return p
}

// savedTiny saves tcTiny with external data at p and loads it back (closed when the test ends).
func savedTiny(t *testing.T, p string) *Model {
	t.Helper()
	if err := tcTiny().Save(p, SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	m, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// editExternal rewrites key of tensor name's external_data in the saved model at p.
func editExternal(t *testing.T, p, name, key, value string) {
	t.Helper()
	b, _ := os.ReadFile(p)
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(b, mp); err != nil {
		t.Fatal(err)
	}
	for _, x := range mp.GetGraph().GetInitializer() {
		if x.GetName() == name {
			for _, e := range x.ExternalData {
				if e.GetKey() == key {
					e.Value = tcStr(value)
				}
			}
		}
	}
	b, _ = proto.Marshal(mp)
	os.WriteFile(p, b, 0o644)
}

func TestLoadErrors(t *testing.T) {
	wantErr := func(t *testing.T, err error, parts ...string) {
		t.Log(err)
		t.Helper()
		if err == nil {
			t.Fatalf("no error, want one mentioning %q", parts)
		}
		for _, s := range parts {
			if !strings.Contains(err.Error(), s) {
				t.Fatalf("error %q does not mention %q", err, s)
			}
		}
	}
	t.Run("truncated", func(t *testing.T) {
		var data []byte
		if b, err := tcTiny().Marshal(); err == nil {
			data = b
		}
		p := filepath.Join(t.TempDir(), "cut.onnx")
		os.WriteFile(p, data[:len(data)/2], 0o644)
		_, err := Load(p)
		wantErr(t, err, p, "truncated or corrupt")
	})
	t.Run("not a model", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "empty.onnx")
		os.WriteFile(p, nil, 0o644)
		_, err := Load(p)
		wantErr(t, err, p, "no graph")
	})
	t.Run("wrong length", func(t *testing.T) {
		p := extModel(t)
		editExternal(t, p, "W", "length", "2044")
		_, err := Load(p)
		wantErr(t, err, `tensor "W"`, "length 2044", "2048 bytes")
	})
	t.Run("dotdot", func(t *testing.T) {
		p := extModel(t)
		editExternal(t, p, "W", "location", "../e.onnx.data")
		_, err := Load(p)
		wantErr(t, err, `tensor "W"`, `"../e.onnx.data"`, `".."`)
	})
	t.Run("absolute", func(t *testing.T) {
		p := extModel(t)
		editExternal(t, p, "W", "location", p+".data")
		_, err := Load(p)
		wantErr(t, err, `tensor "W"`, strconv.Quote(p+".data"), "absolute")
	})
	t.Run("past end", func(t *testing.T) {
		p := extModel(t)
		editExternal(t, p, "W", "offset", "8192")
		_, err := Load(p)
		wantErr(t, err, `tensor "W"`, "offset 8192", "past the end")
	})
	t.Run("data truncated after load", func(t *testing.T) {
		p := extModel(t)
		m, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := os.Truncate(p+".data", 100); err != nil {
			t.Fatal(err)
		}
		_, err = m.RawData(m.Initializer("W"))
		wantErr(t, err, `tensor "W"`, "past the end")
	})
	t.Run("missing data file", func(t *testing.T) {
		p := extModel(t)
		os.Remove(p + ".data")
		_, err := Load(p)
		wantErr(t, err, `tensor "W"`, "e.onnx.data")
	})
	t.Run("closed", func(t *testing.T) {
		m, err := Load(extModel(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := m.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		_, err = m.RawData(m.Initializer("W"))
		wantErr(t, err, `tensor "W"`, "closed")
	})
}

func TestMarshalKeepsExternalReferences(t *testing.T) {
	p := extModel(t)
	m, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	l, err := LoadBytes(b, m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !isExternal(l.Initializer("W")) {
		t.Fatal("Marshal inlined W")
	}
	sameTensors(t, "marshal", rawAll(t, m), rawAll(t, l))
	if l.Initializer("nope") != nil {
		t.Fatal("Initializer of a missing name")
	}
}

func TestSetFloat32sAndInt64s(t *testing.T) {
	m := &Model{}
	for _, dt := range []onnxpb.TensorProto_DataType{onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16,
		onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_DOUBLE} {
		x := &onnxpb.TensorProto{Name: tcStr("x"), DataType: int32Ptr(int32(dt)), Dims: []int64{2, 2},
			FloatData: []float32{9, 9, 9, 9}}
		loc := onnxpb.TensorProto_EXTERNAL
		x.DataLocation = &loc
		x.ExternalData = []*onnxpb.StringStringEntryProto{kv("location", "gone")}
		in := []float32{1.5, -2.25, 65504, 1 + 1.0/2048}
		if err := SetFloat32s(x, in); err != nil {
			t.Fatal(err)
		}
		if isExternal(x) || x.ExternalData != nil || x.FloatData != nil || len(x.RawData) != 4*ElemSize(dt) {
			t.Fatalf("%s: storage not reset: %v", dt, x)
		}
		got, err := m.Float32s(x)
		if err != nil {
			t.Fatal(err)
		}
		want := []float32{1.5, -2.25, 65504, 1 + 1.0/2048}
		switch dt {
		case onnxpb.TensorProto_FLOAT16:
			want[3] = 1 // tie to even
		case onnxpb.TensorProto_BFLOAT16:
			want[2], want[3] = 65536, 1 // 65504 rounds up in bf16's 8-bit mantissa
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: got %v, want %v", dt, got, want)
			}
		}
	}
	if err := SetFloat32s(Int64Tensor("i", []int64{1}, []int64{1}), []float32{1}); err == nil {
		t.Fatal("SetFloat32s on INT64 accepted")
	}
	if err := SetFloat32s(Float32Tensor("f", []int64{3}, make([]float32, 3)), []float32{1}); err == nil ||
		!strings.Contains(err.Error(), `"f"`) {
		t.Fatalf("length mismatch: %v", err)
	}
	i32 := &onnxpb.TensorProto{Name: tcStr("i"), DataType: int32Ptr(int32(onnxpb.TensorProto_INT32)), Dims: []int64{3}, Int32Data: []int32{-1, 7, 1 << 30}}
	v, err := m.Int64s(i32)
	if err != nil || v[0] != -1 || v[1] != 7 || v[2] != 1<<30 {
		t.Fatalf("Int64s(int32) = %v, %v", v, err)
	}
	v, err = m.Int64s(Int64Tensor("j", []int64{2}, []int64{-5, 1 << 40}))
	if err != nil || v[0] != -5 || v[1] != 1<<40 {
		t.Fatalf("Int64s(int64) = %v, %v", v, err)
	}
	if _, err := m.Int64s(Float32Tensor("f", []int64{1}, []float32{1})); err == nil {
		t.Fatal("Int64s of FLOAT accepted")
	}
	if NumElements([]int64{2, 3, 4}) != 24 || NumElements(nil) != 1 || NumElements([]int64{-1, 2}) != -1 ||
		NumElements([]int64{1 << 40, 1 << 40}) != -1 || NumElements([]int64{0, 5}) != 0 {
		t.Fatal("NumElements")
	}
	if ElemSize(onnxpb.TensorProto_BFLOAT16) != 2 || ElemSize(onnxpb.TensorProto_STRING) != 0 || ElemSize(onnxpb.TensorProto_COMPLEX128) != 16 {
		t.Fatal("ElemSize")
	}
	d := Dims(Float32Tensor("f", []int64{3}, make([]float32, 3)))
	if len(d) != 1 || d[0] != 3 {
		t.Fatal("Dims")
	}
}

// TestLoadDoesNotReadWeights: loading a model with 64 MiB of external data allocates almost
// nothing — the weights stay on disk until asked for.
func TestLoadDoesNotReadWeights(t *testing.T) {
	dir := t.TempDir()
	var inits []*onnxpb.TensorProto
	var nodes []*onnxpb.NodeProto
	prev := "x"
	for i := 0; i < 16; i++ {
		name := "W" + strconv.Itoa(i)
		inits = append(inits, NewTensor(name, onnxpb.TensorProto_FLOAT, []int64{2048, 512}, make([]byte, 4<<20)))
		out := "h" + strconv.Itoa(i)
		nodes = append(nodes, tcNode("MatMul", "mm"+strconv.Itoa(i), []string{prev, name}, []string{out}))
		prev = out
	}
	g := &onnxpb.GraphProto{Name: tcStr("big"), Initializer: inits, Node: nodes,
		Input: []*onnxpb.ValueInfoProto{tcVI("x", onnxpb.TensorProto_FLOAT, 1, 2048)}}
	p := filepath.Join(dir, "big.onnx")
	if err := tcModel(g, 17).Save(p, SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Size() > 8192 {
		t.Fatalf("model file %d bytes: weights were inlined", fi.Size())
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	m, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms1)
	defer m.Close()
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("Load of a 64 MiB external-data model allocated %d bytes", alloc)
	}
	b, err := m.RawData(m.Initializer("W7"))
	if err != nil || len(b) != 4<<20 {
		t.Fatalf("W7: %d bytes, %v", len(b), err)
	}
}

// TestConcurrentRawData: external reads from several goroutines share the lazily opened files
// (run under -race).
func TestConcurrentRawData(t *testing.T) {
	m, err := Load(extModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want, _ := tcTiny().Float32s(tcTiny().Initializer("W"))
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			v, err := m.Float32s(m.Initializer("W"))
			if err == nil && v[100] != want[100] {
				err = os.ErrInvalid
			}
			errs <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadChunksStreamsInlineAndExternal(t *testing.T) {
	v := make([]float32, 1000)
	for i := range v {
		v[i] = float32(i) * 0.5
	}
	b := NewBuilder("g", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 1, 1000)
	w := b.Const("w", Float32Tensor("", []int64{1000}, v))
	b.OpOut("Add", "/add", []string{x, w}, []string{"y"})
	b.Output("y", onnxpb.TensorProto_FLOAT, 1, 1000)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(path, SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	ext, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	for _, mm := range []*Model{m, ext} {
		want, _ := mm.RawData(mm.Initializer("w"))
		var got []byte
		calls := 0
		err := mm.ReadChunks(mm.Initializer("w"), 999, func(c []byte) error {
			if len(c)%4 != 0 || len(c) > 996 {
				t.Fatalf("chunk of %d bytes", len(c))
			}
			calls++
			got = append(got, c...)
			return nil
		})
		if err != nil || string(got) != string(want) || calls != 5 {
			t.Fatalf("chunks: %d calls, %d bytes, err %v", calls, len(got), err)
		}
	}
}

// External to external without a transform takes the file-to-file copy path; the bytes, the
// alignment and saving over the loaded file itself must all hold.
func TestSaveExternalToExternalCopies(t *testing.T) {
	v := make([]float32, 3000)
	for i := range v {
		v[i] = float32(i) - 1500.25
	}
	b := NewBuilder("g", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 1, 3000)
	w1 := b.Const("w1", Float32Tensor("", []int64{3000}, v))
	w2 := b.Const("w2", Float32Tensor("", []int64{3, 1000}, v))
	s := b.Op("Add", "/add", []string{x, w1})
	b.OpOut("Add", "/add2", []string{s, b.Op("Reshape", "/r", []string{w2, b.Const("shape", Int64Tensor("", []int64{2}, []int64{1, 3000}))})}, []string{"y"})
	b.Output("y", onnxpb.TensorProto_FLOAT, 1, 3000)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first := filepath.Join(dir, "a.onnx")
	if err := m.Save(first, SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	a, err := Load(first)
	if err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(t.TempDir(), "b.onnx")
	if err := a.Save(second, SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.Save(first, SaveOptions{ExternalData: true}); err != nil { // over itself
		t.Fatal(err)
	}
	a.Close()
	for _, p := range []string{second, first} {
		c, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"w1", "w2"} {
			want, _ := m.RawData(m.Initializer(name))
			got, err := c.RawData(c.Initializer(name))
			if err != nil || string(got) != string(want) {
				t.Fatalf("%s %s: bytes differ (%v)", p, name, err)
			}
			r, _ := parseExternal(c.Initializer(name))
			if r.offset%ExternalAlign != 0 {
				t.Fatalf("%s %s: offset %d not aligned", p, name, r.offset)
			}
		}
		c.Close()
	}
}
