package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
)

// shears runs the CLI in-process and returns stdout, stderr and the exit code.
func shears(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String(), errb.String(), code
}

// importStories imports the shared llama2.c checkpoint into dir.
func importStories(t *testing.T, dir string) string {
	t.Helper()
	ckpt := testkit.StoriesShaped(t)
	out := filepath.Join(dir, "stories260K.onnx")
	if _, e, code := shears(t, "import", "llama2c", ckpt, "-o", out); code != 0 {
		t.Fatalf("import: %s", e)
	}
	return out
}

func inspectJSON(t *testing.T, model string) inspectReport {
	t.Helper()
	o, e, code := shears(t, "inspect", model, "--json")
	if code != 0 {
		t.Fatalf("inspect %s: %s", model, e)
	}
	var r inspectReport
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// linearKey is what inspect says of a linear layer, less its name.
type linearKey struct {
	block   int
	role    string
	in, out int64
}

// linearSet counts a report's linears by block, role and shape: two models agree on their
// linears when their sets are equal.
func linearSet(r inspectReport) map[linearKey]int {
	m := map[linearKey]int{}
	for _, l := range r.Linears {
		m[linearKey{l.Block, l.Role, l.In, l.Out}]++
	}
	return m
}

// prune50 prunes in to 50% by magnitude into out.
// zeroFlags loads a pruned model and returns, for each linear by (block, role), which of its
// weights are zero (in storage order, [in, out]) and the linear itself.
func zeroFlags(t *testing.T, path string) map[[2]any]prunedLinear {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ls, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	res := map[[2]any]prunedLinear{}
	for _, l := range ls {
		v, err := m.Float32s(m.Initializer(l.Weight))
		if err != nil {
			t.Fatal(err)
		}
		z := make([]bool, len(v))
		for i, x := range v {
			z[i] = x == 0
		}
		res[[2]any{l.Block, l.Role}] = prunedLinear{l, z}
	}
	return res
}

// prunedLinear is one linear of a pruned model and its zero flags.
type prunedLinear struct {
	layers.Linear
	Zero []bool
}

func prune50(t *testing.T, in, out string) {
	t.Helper()
	if _, e, code := shears(t, "prune", in, "-o", out, "--method", "magnitude", "--sparsity", "0.5"); code != 0 {
		t.Fatalf("prune %s: %s", in, e)
	}
}

// sparseSuper prunes model (prune50) and adapts it (ranks 8,6,4, alpha 16) in dir, and returns
// the super-network.
func sparseSuper(t *testing.T, model, dir string) string {
	t.Helper()
	sparse, super := filepath.Join(dir, "sparse.onnx"), filepath.Join(dir, "super.onnx")
	prune50(t, model, sparse)
	if _, e, code := shears(t, "adapt", sparse, "-o", super, "--ranks", "8,6,4", "--alpha", "16"); code != 0 {
		t.Fatalf("adapt: %s", e)
	}
	return super
}

// arcSlice writes examples [from, to) of the ARC-Easy training set to dir/name and returns its
// path.
func arcSlice(t *testing.T, dir, name string, from, to int) string {
	t.Helper()
	raw, err := os.ReadFile(testkit.Dataset(t, "ARC-Easy-train.json"))
	if err != nil {
		t.Fatal(err)
	}
	var exs []data.Example
	if err := json.Unmarshal(raw, &exs); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(exs[from:to])
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectFindsTheSameLinearsInImportAndTorchExport(t *testing.T) {
	torch := testkit.TorchStories(t).Path
	ours := importStories(t, t.TempDir())
	a, b := inspectJSON(t, ours), inspectJSON(t, torch)
	if a.Opset != 17 || b.Opset != 17 {
		t.Errorf("opsets %d, %d; want 17", a.Opset, b.Opset)
	}
	if len(a.Linears) != 35 || len(b.Linears) != 35 {
		t.Fatalf("linears: import %d, torch %d; want 35 each", len(a.Linears), len(b.Linears))
	}
	sa, sb := linearSet(a), linearSet(b)
	for k, n := range sa {
		if sb[k] != n {
			t.Errorf("linear %+v: %d in import, %d in torch export", k, n, sb[k])
		}
	}
	roles := map[string]int{}
	for _, l := range a.Linears {
		roles[l.Role]++
	}
	for _, r := range []string{"q", "k", "v", "o", "gate", "up", "down"} {
		if roles[r] != 5 {
			t.Errorf("role %s: %d layers, want 5", r, roles[r])
		}
	}
	// 35 linears hold 226,560 weights (ONNX-NOTES §8); the head is reported apart.
	var n int64
	for _, l := range a.Linears {
		n += l.In * l.Out
	}
	if n != 226560 {
		t.Errorf("linear weights %d, want 226560", n)
	}
	if len(a.Head) != 1 || len(b.Head) != 1 {
		t.Errorf("LM heads: %d and %d, want 1", len(a.Head), len(b.Head))
	}
}

func TestGenerateJSONGolden(t *testing.T) {
	testkit.Shared(t, "models/stories260K/stories260K.bin") // golden ids: the trained model
	tok := testkit.Shared(t, "models/stories260K/tok512.bin")
	testkit.ORT(t)
	model := importStories(t, t.TempDir())
	o, e, code := shears(t, "generate", model, "--tokenizer", tok, "--max-tokens", "20", "--json")
	if code != 0 {
		t.Fatal(e)
	}
	var r struct {
		IDs  []int  `json:"ids"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		t.Fatal(err)
	}
	// llama2.c's run.c greedy ids from BOS (provenance in models/llama2c/import_test.go greedyIDs).
	want := []int{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337}
	if len(r.IDs) != len(want) {
		t.Fatalf("ids %v, want %v", r.IDs, want)
	}
	for i := range want {
		if r.IDs[i] != want[i] {
			t.Fatalf("ids %v, want %v", r.IDs, want)
		}
	}
	if !strings.Contains(r.Text, "Once upon a time, there was a little girl named Lily.") {
		t.Errorf("text %q", r.Text)
	}
}

func TestPruneReportAndInspectSparsity(t *testing.T) {
	tok := testkit.Tok512Shaped(t)
	calib := testkit.Dataset(t, "ARC-Easy-train.json")
	testkit.ORT(t)
	dir := t.TempDir()
	model := importStories(t, dir)
	out := filepath.Join(dir, "p.onnx")
	rep := filepath.Join(dir, "r.json")
	_, e, code := shears(t, "prune", model, "-o", out, "--sparsity", "0.5", "--calib", calib, "--tokenizer", tok,
		"--samples", "4", "--seq-len", "64", "--report", rep)
	if code != 0 {
		t.Fatal(e)
	}
	var r pruneReport
	b, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Layers) != 35 || r.Sparsity != 0.5 {
		t.Errorf("report: %d layers, sparsity %g; want 35 and 0.5", len(r.Layers), r.Sparsity)
	}
	ins := inspectJSON(t, out)
	for _, l := range ins.Linears {
		if l.Sparsity != 0.5 {
			t.Errorf("inspect: %s sparsity %g", l.Name, l.Sparsity)
		}
	}
	if ins.Head[0].Sparsity != 0 {
		t.Errorf("LM head pruned")
	}
}

func TestPruneBadInputGivesClearErrorAndNoOutput(t *testing.T) {
	tok := testkit.Tok512Shaped(t)
	calib := testkit.Dataset(t, "ARC-Easy-train.json")
	testkit.ORT(t)
	dir := t.TempDir()
	model := importStories(t, dir)
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	// A model with no linear layers: logits = Gather(table, ids).
	b := onnx.NewBuilder("nolinear", 17)
	ids := b.Input("input_ids", onnxpb.TensorProto_INT64, "batch", "sequence")
	table := b.Const("table", onnx.Float32Tensor("", []int64{4, 3}, make([]float32, 12)))
	b.OpOut("Gather", "/embed", []string{table, ids}, []string{"logits"})
	b.Output("logits", onnxpb.TensorProto_FLOAT, "batch", "sequence", 3)
	nm, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	noLinear := filepath.Join(dir, "nolinear.onnx")
	if err := nm.Save(noLinear, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"sparsity 1", []string{model, "--sparsity", "1"}, "[0, 1)"},
		{"sparsity negative", []string{model, "--sparsity", "-0.2"}, "[0, 1)"},
		{"N:M wrong sparsity", []string{model, "--pattern", "2:4", "--sparsity", "0.3"}, "--sparsity 0.5"},
		{"bad pattern", []string{model, "--pattern", "5:4"}, "pattern"},
		{"no linears", []string{noLinear, "--method", "magnitude"}, "no linear layers"},
		{"empty calibration", []string{model, "--calib", empty}, "empty.txt"},
		{"missing model", []string{filepath.Join(dir, "nope.onnx")}, "nope.onnx"},
	}
	for _, c := range cases {
		out := filepath.Join(dir, "out-"+strings.ReplaceAll(c.name, " ", "_")+".onnx")
		args := append([]string{"prune"}, c.args...)
		args = append(args, "-o", out, "--tokenizer", tok)
		if !contains(c.args, "--calib") {
			args = append(args, "--calib", calib)
		}
		_, e, code := shears(t, args...)
		if code == 0 {
			t.Errorf("%s: exit 0", c.name)
			continue
		}
		if !strings.Contains(e, c.want) {
			t.Errorf("%s: error %q does not mention %q", c.name, e, c.want)
		}
		if strings.Contains(e, "panic") {
			t.Errorf("%s: panicked: %s", c.name, e)
		}
		matches, _ := filepath.Glob(out + "*")
		if len(matches) > 0 {
			t.Errorf("%s: output left behind: %v", c.name, matches)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestHelpTeaches(t *testing.T) {
	o, _, code := shears(t, "--help")
	if code != 0 || !strings.Contains(o, "prune") || !strings.Contains(o, "inspect") {
		t.Fatalf("overview: %q", o)
	}
	o, _, code = shears(t, "prune", "--help")
	if code != 0 || !strings.Contains(o, "Example") || !strings.Contains(o, "--sparsity") {
		t.Fatalf("prune --help: %q", o)
	}
	_, e, code := shears(t, "frobnicate")
	if code != 2 || !strings.Contains(e, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, e)
	}
}

// The PyTorch export (symbolic activation shapes, exporter op soup) prunes too, its alike blocks
// sharing calibration sessions.
func TestPruneTorchExport(t *testing.T) {
	torch := testkit.TorchStories(t).Path
	tok := testkit.Tok512Shaped(t)
	calib := testkit.Dataset(t, "ARC-Easy-train.json")
	testkit.ORT(t)
	out := filepath.Join(t.TempDir(), "torch-w50.onnx")
	o, e, code := shears(t, "prune", torch, "-o", out, "--sparsity", "0.5", "--calib", calib, "--tokenizer", tok,
		"--samples", "4", "--seq-len", "64", "--json")
	if code != 0 {
		t.Fatal(e)
	}
	var r struct {
		Sparsity float64 `json:"sparsity"`
		Layers   []any   `json:"layers"`
		Sessions int     `json:"calibration_sessions"`
	}
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		t.Fatal(err)
	}
	if r.Sparsity != 0.5 || len(r.Layers) != 35 || r.Sessions != 3 {
		t.Errorf("torch export: sparsity %g over %d layers with %d sessions; want 0.5, 35, 3", r.Sparsity, len(r.Layers), r.Sessions)
	}
}
