package lm

import (
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

func TestNames(t *testing.T) {
	if Past(3, Key) != "past_key_values.3.key" || Present(0, Value) != "present.0.value" {
		t.Fatalf("names %s %s", Past(3, Key), Present(0, Value))
	}
	for name, want := range map[string]struct {
		i  int
		k  Kind
		ok bool
	}{
		"past_key_values.12.value": {12, Value, true},
		"past_key_values.0.key":    {0, Key, true},
		"past_key_values.01.key":   {0, "", false},
		"past_key_values.-1.key":   {0, "", false},
		"past_key_values.0.query":  {0, "", false},
		"present.0.key":            {0, "", false},
	} {
		i, k, ok := ParsePast(name)
		if ok != want.ok || (ok && (i != want.i || k != want.k)) {
			t.Errorf("ParsePast(%q) = %d %q %v, want %+v", name, i, k, ok, want)
		}
	}
	if PresentOf("past_key_values.2.value") != "present.2.value" || PresentOf("input_ids") != "" {
		t.Error("PresentOf")
	}
}

func withPast(layers int, dt onnxpb.TensorProto_DataType) []IO {
	ins := []IO{{InputIDs, onnxpb.TensorProto_INT64, []int64{-1, -1}}, {AttentionMask, onnxpb.TensorProto_INT64, []int64{-1, -1}},
		{PositionIDs, onnxpb.TensorProto_INT64, []int64{-1, -1}}}
	for i := 0; i < layers; i++ {
		for _, k := range []Kind{Key, Value} {
			ins = append(ins, IO{Past(i, k), dt, []int64{-1, 4, -1, 8}})
		}
	}
	return ins
}

func TestFromIO(t *testing.T) {
	ins := append(withPast(2, onnxpb.TensorProto_FLOAT16), IO{"lora_rank_mask.x", onnxpb.TensorProto_FLOAT, []int64{8}})
	outs := []IO{{Logits, onnxpb.TensorProto_FLOAT, nil}, {Present(0, Key), 0, nil}, {Present(1, Value), 0, nil}}
	it, err := FromIO(ins, outs)
	if err != nil {
		t.Fatal(err)
	}
	if !it.HasPast() || it.Layers != 2 || it.KVHeads != 4 || it.HeadDim != 8 || it.PastType != onnxpb.TensorProto_FLOAT16 ||
		!it.InputIDs || !it.AttentionMask || !it.PositionIDs || !it.Logits || it.Presents != 2 || !slices.Equal(it.Other, []string{"lora_rank_mask.x"}) {
		t.Errorf("interface %+v", it)
	}
	// A cache with a hole, a mismatched layer, or no mask is refused with the input named.
	bad := withPast(2, onnxpb.TensorProto_FLOAT)
	for _, tc := range []struct {
		ins  []IO
		want string
	}{
		{slices.Delete(slices.Clone(bad), 3, 5), `no "past_key_values.0.key"`},
		{append(slices.Clone(bad[:6]), IO{Past(1, Value), onnxpb.TensorProto_FLOAT, []int64{-1, 2, -1, 8}}), `past_key_values.1.value`},
		{append(slices.Clone(bad[:1]), bad[3:]...), `no "attention_mask" input`},
	} {
		if _, err := FromIO(tc.ins, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one naming %s", err, tc.want)
		}
	}
}

// Feeds of a padded batch: ids right-padded, the mask 0 on padding, positions counting real
// tokens only (past included), the empty past [B, kv, 0, hd]; and a step with a past mask.
func TestFeeds(t *testing.T) {
	it, err := FromIO(withPast(1, onnxpb.TensorProto_FLOAT), nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := it.Feeds(Batch{IDs: [][]int{{5, 6, 7}, {9}}, Pad: 2})
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, shape, want []int64) {
		t.Helper()
		g := f[name]
		if !slices.Equal(g.Shape, shape) || !slices.Equal(g.I64, want) {
			t.Errorf("%s = %v %v, want %v %v", name, g.Shape, g.I64, shape, want)
		}
	}
	check(InputIDs, []int64{2, 3}, []int64{5, 6, 7, 9, 2, 2})
	check(AttentionMask, []int64{2, 3}, []int64{1, 1, 1, 1, 0, 0})
	check(PositionIDs, []int64{2, 3}, []int64{0, 1, 2, 0, PadPosition, PadPosition})
	for _, k := range []Kind{Key, Value} {
		p := f[Past(0, k)]
		if !slices.Equal(p.Shape, []int64{2, 4, 0, 8}) || p.DType != onnxpb.TensorProto_FLOAT || p.F32 == nil || len(p.F32) != 0 {
			t.Errorf("%s = %+v, want an empty float32 [2 4 0 8]", Past(0, k), p)
		}
	}
	// Next step: one token per row after the mask above; the caller feeds the cache.
	f, err = it.Feeds(Batch{IDs: [][]int{{8}, {10}}, PastMask: [][]int64{{1, 1, 1}, {1, 0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	check(AttentionMask, []int64{2, 4}, []int64{1, 1, 1, 1, 1, 0, 0, 1})
	check(PositionIDs, []int64{2, 1}, []int64{3, 1})
	if _, ok := f[Past(0, Key)]; ok {
		t.Error("a step with a past fed an empty past")
	}
	for _, b := range []Batch{{}, {IDs: [][]int{{}}}, {IDs: [][]int{{1}}, PastMask: [][]int64{{1}, {1}}}} {
		if _, err := it.Feeds(b); err == nil {
			t.Errorf("batch %+v: no error", b)
		}
	}
	// A symbolic head dim cannot make an empty past.
	sym := withPast(1, onnxpb.TensorProto_FLOAT)
	sym[3].Dims, sym[4].Dims = []int64{-1, 4, -1, -1}, []int64{-1, 4, -1, -1}
	it, _ = FromIO(sym, nil)
	if _, err := it.Feeds(Batch{IDs: [][]int{{1}}}); err == nil || !strings.Contains(err.Error(), "symbolic") {
		t.Errorf("symbolic head dim: %v", err)
	}
}
