package runtime_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/runtime"
)

func TestOptionsValidate(t *testing.T) {
	err := runtime.Options{Device: "rocm"}.Validate()
	if err == nil || !strings.Contains(err.Error(), `"rocm"`) || !strings.Contains(err.Error(), "cpu, cuda, tensorrt, webgpu") {
		t.Fatalf("unknown device: %v", err)
	}
	err = runtime.Options{OptLevel: "max"}.Validate()
	if err == nil || !strings.Contains(err.Error(), `"max"`) {
		t.Fatalf("unknown opt level: %v", err)
	}
	for _, o := range []runtime.Options{{}, {Device: "CPU"}, {Device: "cuda", DeviceID: 1, Threads: 4, OptLevel: "basic"}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if _, err := runtime.OpenFile("whatever.onnx", runtime.Options{Device: "rocm"}); err == nil || !strings.Contains(err.Error(), "rocm") {
		t.Fatalf("OpenFile with a bad device: %v", err)
	}
}

func TestInitIdempotentConcurrent(t *testing.T) {
	testkit.ORT(t)
	lib := runtime.LibraryPath()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = runtime.Init(lib) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if v := runtime.Version(); !strings.HasPrefix(v, "1.") {
		t.Fatalf("Version() = %q", v)
	}
	if err := runtime.Init(filepath.Join(t.TempDir(), "libother.so")); err == nil || !strings.Contains(err.Error(), "already initialized") {
		t.Fatalf("switching libraries: %v", err)
	}
}

func TestCUDAUnavailable(t *testing.T) {
	path := storiesPath(t)
	testkit.ORT(t)
	s, err := runtime.OpenFile(path, runtime.Options{Device: "cuda"})
	if err == nil {
		s.Close()
		t.Skip("a CUDA provider is available here; this test covers machines without one")
	}
	if !errors.Is(err, runtime.ErrProvider) {
		t.Fatalf("got %v, want ErrProvider", err)
	}
	for _, want := range []string{"cuda execution provider", "CUDA-enabled onnxruntime", "same folder as libonnxruntime", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Logf("cuda: %v", err)

	// The other GPU providers fail just as cleanly here (or work, where they are installed).
	for _, dev := range []string{"tensorrt", "webgpu"} {
		s, err := runtime.OpenFile(path, runtime.Options{Device: dev})
		if err == nil {
			s.Close()
			continue
		}
		if !errors.Is(err, runtime.ErrProvider) || !strings.Contains(err.Error(), dev+" execution provider") {
			t.Errorf("%s: got %v, want an ErrProvider naming it", dev, err)
		}
		t.Logf("%s: %v", dev, err)
	}
}

func TestStoriesIO(t *testing.T) {
	s := openStories(t)
	wantIn := []runtime.IOInfo{{Name: "input_ids", DType: runtime.Int64, Dims: []int64{-1, -1}}}
	wantOut := []runtime.IOInfo{{Name: "logits", DType: runtime.Float32, Dims: []int64{-1, -1, 512}}}
	if got := s.Inputs(); !reflect.DeepEqual(got, wantIn) {
		t.Errorf("Inputs() = %+v, want %+v", got, wantIn)
	}
	if got := s.Outputs(); !reflect.DeepEqual(got, wantOut) {
		t.Errorf("Outputs() = %+v, want %+v", got, wantOut)
	}
}

func TestStoriesAfterBOS(t *testing.T) {
	s := openStories(t)
	out, err := s.Run(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{1, 1}, []int64{1})}, []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	lg := out["logits"]
	if lg.DType != runtime.Float32 || !reflect.DeepEqual(lg.Shape, []int64{1, 1, 512}) || len(lg.F32) != 512 {
		t.Fatalf("logits: %s %v, %d values", lg.DType, lg.Shape, len(lg.F32))
	}
	checkTop5(t, lg.F32)
}

func TestStoriesOpenBytes(t *testing.T) {
	path := storiesPath(t)
	testkit.ORT(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(b, "", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{1, 1}, []int64{1})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkTop5(t, out["logits"].F32)
}

// batchIDs is a [2,64] batch: row 0 starts with BOS, row 1 is a different sequence.
func batchIDs() []int64 {
	ids := make([]int64, 2*64)
	ids[0] = 1
	for i := 1; i < 64; i++ {
		ids[i] = int64(3 + (i*37)%509)
	}
	for i := 0; i < 64; i++ {
		ids[64+i] = int64(3 + (i*101+7)%509)
	}
	return ids
}

func TestStoriesBatch(t *testing.T) {
	s := openStories(t)
	ids := batchIDs()
	out, err := s.Run(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{2, 64}, ids)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lg := out["logits"]
	if !reflect.DeepEqual(lg.Shape, []int64{2, 64, 512}) || len(lg.F32) != 2*64*512 {
		t.Fatalf("logits shape %v (%d values), want [2 64 512]", lg.Shape, len(lg.F32))
	}
	// Causal: position 0 of row 0 (BOS) gives the golden logits whatever follows.
	checkTop5(t, lg.F32[:512])
	// Rows are independent: row 1 alone gives the same logits.
	one, err := s.Run(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{1, 64}, ids[64:])}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range one["logits"].F32 {
		if d := abs32(v - lg.F32[64*512+i]); !(d <= 1e-4) {
			t.Fatalf("row 1 logit %d: batched %v, alone %v", i, lg.F32[64*512+i], v)
		}
	}
}

func TestRunErrorsNameTheProblem(t *testing.T) {
	s := openStories(t)
	ids := runtime.I64([]int64{1, 1}, []int64{1})
	cases := []struct {
		in   map[string]*runtime.Tensor
		out  []string
		want []string
	}{
		{map[string]*runtime.Tensor{"input_idz": ids}, nil, []string{`no input "input_idz"`, "input_ids", s.Name()}},
		{map[string]*runtime.Tensor{}, nil, []string{`missing input "input_ids"`}},
		{map[string]*runtime.Tensor{"input_ids": ids}, []string{"logitz"}, []string{`no output "logitz"`, "logits"}},
		{map[string]*runtime.Tensor{"input_ids": runtime.F32([]int64{1, 1}, []float32{1})}, nil, []string{`input "input_ids"`, "float32", "int64"}},
		{map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{1, 2}, []int64{1})}, nil, []string{`input "input_ids"`, "needs 2 elements, has 1"}},
		{map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{2}, []int64{1, 1})}, nil, []string{`input "input_ids"`, "rank 2"}},
	}
	for _, c := range cases {
		_, err := s.Run(c.in, c.out)
		if err == nil {
			t.Errorf("%v %v: no error", c.in, c.out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
	}
	// An out-of-range token is onnxruntime's error, still prefixed with the model.
	_, err := s.Run(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{1, 1}, []int64{9999})}, nil)
	if err == nil || !strings.Contains(err.Error(), s.Name()) {
		t.Errorf("out-of-range token: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	testkit.ORT(t)
	missing := filepath.Join(t.TempDir(), "nope.onnx")
	if _, err := runtime.OpenFile(missing, testOpts); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.onnx")
	os.WriteFile(junk, []byte("this is not a protobuf"), 0o644)
	if _, err := runtime.OpenFile(junk, testOpts); err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk file: %v", err)
	}
	if _, err := runtime.OpenBytes(nil, "", testOpts); err == nil || !strings.Contains(err.Error(), "empty model") {
		t.Errorf("empty bytes: %v", err)
	}
	if _, err := runtime.OpenBytes([]byte{1}, filepath.Join(t.TempDir(), "nodir"), testOpts); err == nil || !strings.Contains(err.Error(), "nodir") {
		t.Errorf("missing external dir: %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	path := storiesPath(t)
	testkit.ORT(t)
	s, err := runtime.OpenFile(path, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Bind(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{1, 1}, []int64{1})},
		map[string]*runtime.Tensor{"logits": runtime.F32([]int64{1, 1, 512}, make([]float32, 512))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Bound.Close after Session.Close: %v", err)
	}
	if _, err := s.Run(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{1, 1}, []int64{1})}, nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Run after Close: %v", err)
	}
	if err := b.Run(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Bound.Run after Close: %v", err)
	}
}

func TestBindMutateAndRerun(t *testing.T) {
	s := openStories(t)
	const T = 8
	ids := make([]int64, T)
	ids[0] = 1
	for i := 1; i < T; i++ {
		ids[i] = int64(260 + i)
	}
	logits := make([]float32, T*512)
	in := runtime.I64([]int64{1, T}, ids)
	out := runtime.F32([]int64{1, T, 512}, logits)
	b, err := s.Bind(map[string]*runtime.Tensor{"input_ids": in}, map[string]*runtime.Tensor{"logits": out})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	checkTop5(t, logits[:512])
	first := append([]float32{}, logits...)

	// Mutate the bound input in place: the next run must see the new tokens, and agree with Run.
	for i := range ids {
		ids[i] = int64(300 + 7*i)
	}
	if err := b.Run(); err != nil {
		t.Fatal(err)
	}
	want, err := s.Run(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{1, T}, append([]int64{}, ids...))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(logits, want["logits"].F32) {
		t.Fatal("bound run after mutation differs from a fresh Run on the same ids")
	}
	if reflect.DeepEqual(logits, first) {
		t.Fatal("bound outputs did not change after the input changed")
	}

	// Replacing the slice instead of mutating it is caught.
	in.I64 = append([]int64{}, ids...)
	if err := b.Run(); err == nil || !strings.Contains(err.Error(), "replaced after Bind") {
		t.Fatalf("replaced slice: %v", err)
	}
	if _, err := s.Bind(map[string]*runtime.Tensor{"input_ids": in}, map[string]*runtime.Tensor{"logitz": out}); err == nil || !strings.Contains(err.Error(), "logitz") {
		t.Fatalf("bind unknown output: %v", err)
	}
}

func TestTinyModelInitializerInputsFP16Scalar(t *testing.T) {
	testkit.ORT(t)
	s, err := runtime.OpenBytes(tinyModel(t), "", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// w is an initializer listed as a graph input: onnxruntime does not require it, neither do we.
	if got := s.Inputs(); len(got) != 1 || got[0].Name != "x" {
		t.Fatalf("Inputs() = %+v, want just x", got)
	}
	x := runtime.F32([]int64{2, 3}, []float32{0.5, -1, 2, 10, 20, 30})
	// h is fp16 with a symbolic dimension: onnxruntime_go cannot allocate it, the error says what to do.
	_, err = s.Run(map[string]*runtime.Tensor{"x": x}, []string{"y"})
	if err == nil || !strings.Contains(err.Error(), `output "h"`) || !strings.Contains(err.Error(), "RunWithShapes") {
		t.Fatalf("dynamic fp16 output: %v", err)
	}
	out, err := s.RunWithShapes(map[string]*runtime.Tensor{"x": x}, nil, map[string][]int64{"h": {2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	wantY := []float32{1.5, 1, 5, 11, 22, 33}
	if !reflect.DeepEqual(out["y"].F32, wantY) {
		t.Errorf("y = %v, want %v", out["y"].F32, wantY)
	}
	for _, name := range []string{"h", "hs"} {
		h := out[name]
		if h.DType != runtime.Float16 || len(h.Raw) != 12 {
			t.Fatalf("%s: %s, %d bytes", name, h.DType, len(h.Raw))
		}
		// IEEE half bits of 1.5, 1, 5, 11, 22, 33.
		wantBits := []uint16{0x3E00, 0x3C00, 0x4500, 0x4980, 0x4D80, 0x5020}
		for i, w := range wantBits {
			if got := binary.LittleEndian.Uint16(h.Raw[2*i:]); got != w {
				t.Errorf("%s[%d] = %#04x, want %#04x (%v)", name, i, got, w, wantY[i])
			}
		}
	}
	if s := out["s"]; len(s.Shape) != 0 || len(s.F32) != 1 || s.F32[0] != 73.5 {
		t.Errorf("scalar s = %v %v, want [] [73.5]", s.Shape, s.F32)
	}

	// The same through a binding, with the scalar bound and fp16 h preallocated by the caller.
	sOut := runtime.F32([]int64{}, []float32{0})
	hOut, _ := runtime.Zeros(runtime.Float16, []int64{2, 3})
	b, err := s.Bind(map[string]*runtime.Tensor{"x": x}, map[string]*runtime.Tensor{"s": sOut, "h": hOut})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for round, scale := range []float32{1, 2} {
		for i := range x.F32 {
			x.F32[i] = scale * []float32{0.5, -1, 2, 10, 20, 30}[i]
		}
		if err := b.Run(); err != nil {
			t.Fatal(err)
		}
		want := scale*61.5 + 12
		if sOut.F32[0] != want {
			t.Errorf("round %d: bound scalar = %v, want %v", round, sOut.F32[0], want)
		}
		// h[5] = 30*scale + 3: 33 (0x5020), then 63 (0x53E0).
		if got, want := binary.LittleEndian.Uint16(hOut.Raw[2*5:]), []uint16{0x5020, 0x53E0}[round]; got != want {
			t.Errorf("round %d: bound h[5] = %#04x, want %#04x", round, got, want)
		}
	}
}

// RunInto writes the given outputs in place — views of buffers larger than the output, an fp16
// output with a symbolic dimension included — returns those very tensors, allocates the rest,
// and refuses a tensor for an unknown output or of the wrong type.
func TestRunIntoWritesViewsInPlace(t *testing.T) {
	testkit.ORT(t)
	s, err := runtime.OpenBytes(tinyModel(t), "", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := runtime.F32([]int64{2, 3}, []float32{0.5, -1, 2, 10, 20, 30})
	yBuf := runtime.F32([]int64{10}, make([]float32, 10))
	hBuf, _ := runtime.Zeros(runtime.Float16, []int64{8})
	y, err := yBuf.View([]int64{2, 3})
	if err != nil {
		t.Fatal(err)
	}
	h, err := hBuf.View([]int64{2, 3})
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.RunInto(map[string]*runtime.Tensor{"x": x}, []string{"y", "h", "s"}, map[string]*runtime.Tensor{"y": y, "h": h})
	if err != nil {
		t.Fatal(err)
	}
	if out["y"] != y || out["h"] != h {
		t.Fatal("RunInto returned other tensors than the ones given")
	}
	wantY := []float32{1.5, 1, 5, 11, 22, 33}
	if !reflect.DeepEqual(yBuf.F32[:6], wantY) || yBuf.F32[6] != 0 {
		t.Errorf("y buffer %v, want %v then zeros", yBuf.F32, wantY)
	}
	// h[5] = 33 in IEEE half bits, written into the buffer behind the view.
	if got := binary.LittleEndian.Uint16(hBuf.Raw[2*5:]); got != 0x5020 {
		t.Errorf("h[5] = %#04x in the buffer, want 0x5020", got)
	}
	if sc := out["s"]; sc == nil || len(sc.F32) != 1 || sc.F32[0] != 73.5 {
		t.Errorf("scalar s = %v, want 73.5", sc)
	}
	if _, err := yBuf.View([]int64{11}); err == nil || !strings.Contains(err.Error(), "holds 10") {
		t.Errorf("a view past the buffer: %v", err)
	}
	if _, err := s.RunInto(map[string]*runtime.Tensor{"x": x}, nil, map[string]*runtime.Tensor{"z": y}); err == nil || !strings.Contains(err.Error(), `"z"`) {
		t.Errorf("unknown output: %v", err)
	}
	if _, err := s.RunInto(map[string]*runtime.Tensor{"x": x}, nil, map[string]*runtime.Tensor{"h": y}); err == nil || !strings.Contains(err.Error(), `output "h"`) {
		t.Errorf("float32 tensor for the fp16 output: %v", err)
	}
}
