package train

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/trainstep"
	"google.golang.org/protobuf/proto"
)

// The train-step graph of an external-data model refers to the same data file (no copy
// written), and trains exactly as the inline model's step does.
func TestStepSharesExternalData(t *testing.T) {
	testkit.ORT(t)
	m := stories(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "base.onnx")
	if err := m.Save(p, onnx.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	ext, err := onnx.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	listing := func() []string {
		es, _ := os.ReadDir(dir)
		var n []string
		for _, e := range es {
			n = append(n, e.Name())
		}
		return n
	}
	before := listing()
	const b, l = 2, 16
	cfg := trainstep.Config{Batch: b, Seq: l, Trainable: normWeights()}
	st, err := trainstep.Build(ext, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Model.Dir != ext.Dir {
		t.Fatalf("step graph's Dir %q, the model's %q", st.Model.Dir, ext.Dir)
	}
	// The serialized step (what the session is opened from) refers to base.onnx.data for every
	// frozen weight and carries no weight bytes itself.
	raw, err := st.Model.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(raw, mp); err != nil {
		t.Fatal(err)
	}
	var shared, inlineBytes int
	for _, x := range mp.GetGraph().GetInitializer() {
		for _, e := range x.GetExternalData() {
			if e.GetKey() == "location" {
				if e.GetValue() != "base.onnx.data" {
					t.Fatalf("tensor %s refers to %q", x.GetName(), e.GetValue())
				}
				shared++
			}
		}
		inlineBytes += len(x.GetRawData())
	}
	fi, _ := os.Stat(p + ".data")
	t.Logf("step graph: %d B serialized, %d weights in base.onnx.data (%d B), %d B inline", len(raw), shared, fi.Size(), inlineBytes)
	if shared == 0 || int64(len(raw)) > fi.Size()/4 {
		t.Fatalf("step graph carries %d B for a %d B data file (%d shared tensors)", len(raw), fi.Size(), shared)
	}
	r, err := New(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ids := randomIDs(b*l, 11)
	got, err := r.Accumulate(ids, ids, 1)
	if err != nil {
		t.Fatal(err)
	}
	if after := listing(); !slices.Equal(before, after) {
		t.Fatalf("files in the model's folder changed: %v → %v", before, after)
	}
	// The inline model's step: the same loss and gradients, bit for bit.
	st2, err := trainstep.Build(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := New(st2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	want, err := r2.Accumulate(ids, ids, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("external-data step loss %v, inline %v", got, want)
	}
	for _, n := range normWeights() {
		g1, _ := r.Grad(n)
		g2, _ := r2.Grad(n)
		if !slices.Equal(g1, g2) {
			t.Fatalf("gradient of %s differs between the external-data and inline steps", n)
		}
	}
}
