package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
)

// TestConvertInspectPrune converts stories260K to fp16 and bf16, then checks that inspect
// reports the same linears with their weights in the new type, and that a Wanda prune of the
// converted model keeps the type and reaches the asked sparsity.
func TestConvertInspectPrune(t *testing.T) {
	dir := t.TempDir()
	in := importStories(t, dir)
	ref := inspectJSON(t, in)
	tok := testkit.Tok512Shaped(t)
	calib := testkit.Dataset(t, "ARC-Easy-train.json")
	testkit.ORT(t)
	var linearParams int64
	for _, l := range append(ref.Linears, ref.Head...) {
		linearParams += l.In * l.Out
	}
	embed := int64(512 * 64)
	for _, dt := range []string{"fp16", "bf16"} {
		out := filepath.Join(dir, dt+".onnx")
		o, e, code := shears(t, "convert", in, "-o", out, "--dtype", dt)
		if code != 0 || !strings.Contains(o, "37 tensors in "+dt) {
			t.Fatalf("convert %s: %d %s %s", dt, code, o, e)
		}
		r := inspectJSON(t, out)
		if len(r.Linears) != 35 || len(r.Head) != 1 {
			t.Fatalf("%s: inspect found %d linears + %d head", dt, len(r.Linears), len(r.Head))
		}
		for i, l := range r.Linears {
			if w := ref.Linears[i]; l.Block != w.Block || l.Role != w.Role || l.In != w.In || l.Out != w.Out || l.Weight != w.Weight || l.Sparsity != 0 {
				t.Errorf("%s: linear %d is %+v, was %+v", dt, i, l, w)
			}
		}
		key := map[string]string{"fp16": "FLOAT16", "bf16": "BFLOAT16"}[dt]
		if r.Dtypes[key] != linearParams+embed || r.Params != ref.Params || r.Dtypes["FLOAT"] != ref.Dtypes["FLOAT"]-linearParams-embed {
			t.Errorf("%s: param dtypes %v (params %d), want %s %d", dt, r.Dtypes, r.Params, key, linearParams+embed)
		}
		pruned := filepath.Join(dir, dt+"-wanda.onnx")
		if _, e, code := shears(t, "prune", out, "-o", pruned, "--calib", calib, "--tokenizer", tok, "--samples", "4", "--seq-len", "64"); code != 0 {
			t.Fatalf("prune %s: %s", dt, e)
		}
		p := inspectJSON(t, pruned)
		if p.Dtypes[key] != r.Dtypes[key] {
			t.Errorf("%s: pruning changed the dtypes: %v", dt, p.Dtypes)
		}
		if p.Sparsity < 0.499 || p.Sparsity > 0.501 {
			t.Errorf("%s: sparsity %.4f after a 50%% prune", dt, p.Sparsity)
		}
	}
	if _, e, code := shears(t, "convert", in, "-o", filepath.Join(dir, "x.onnx"), "--dtype", "fp8"); code != 2 || !strings.Contains(e, `--dtype: dtype "fp8"`) {
		t.Errorf("bad dtype: %d %s", code, e)
	}
	if _, e, code := shears(t, "convert", filepath.Join(dir, "fp16.onnx"), "-o", filepath.Join(dir, "y.onnx")); code != 1 || !strings.Contains(e, "no float32 weights") {
		t.Errorf("converting twice: %d %s", code, e)
	}
}
