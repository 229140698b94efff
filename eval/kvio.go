package eval

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/shears-ml/shears/runtime"
)

// kvIO is what generation needs to know about a causal LM's inputs: optimum's with-past
// interface (input_ids, attention_mask, position_ids, past_key_values.{i}.key|value →
// logits, present.{i}.key|value), read from a session's inputs.
//
// TODO(kv): the lm package owns these names and feeds; this file goes when it lands.
type kvIO struct {
	Layers           int   // layers with a past input; 0 = no cache
	KVHeads, HeadDim int64 // from the past inputs' [batch, kv_heads, past, head_dim]
	PastType         runtime.DType
	mask, pos        bool
	Other            []string // inputs outside the interface
}

const logitsName = "logits"

var kvKinds = []string{"key", "value"}

func pastName(i int, kind string) string    { return "past_key_values." + strconv.Itoa(i) + "." + kind }
func presentName(i int, kind string) string { return "present." + strconv.Itoa(i) + "." + kind }

// HasPast reports whether the model takes a KV cache.
func (k *kvIO) HasPast() bool { return k.Layers > 0 }

// readKV reads the interface and checks the cache is whole: key and value for every layer up
// to the last, rank 4, one type, one kv heads and head dim.
func readKV(inputs []runtime.IOInfo) (*kvIO, error) {
	k := &kvIO{}
	past := map[string]runtime.IOInfo{}
	ids := false
	for _, in := range inputs {
		switch name := in.Name; {
		case name == "input_ids":
			ids = true
		case name == "attention_mask":
			k.mask = true
		case name == "position_ids":
			k.pos = true
		case strings.HasPrefix(name, "past_key_values."):
			rest := strings.TrimPrefix(name, "past_key_values.")
			num, kind, ok := strings.Cut(rest, ".")
			i, err := strconv.Atoi(num)
			if !ok || err != nil || i < 0 || (kind != "key" && kind != "value") {
				k.Other = append(k.Other, name)
				continue
			}
			past[name] = in
			k.Layers = max(k.Layers, i+1)
		default:
			k.Other = append(k.Other, name)
		}
	}
	if !ids {
		return nil, fmt.Errorf("the model has no input_ids input")
	}
	for i := 0; i < k.Layers; i++ {
		for _, kind := range kvKinds {
			in, ok := past[pastName(i, kind)]
			if !ok {
				return nil, fmt.Errorf("the model has past inputs up to layer %d but no %q", k.Layers-1, pastName(i, kind))
			}
			if len(in.Dims) != 4 || in.Dims[1] <= 0 || in.Dims[3] <= 0 {
				return nil, fmt.Errorf("past input %q has dims %v; want [batch, kv_heads, past_sequence_length, head_dim] with static kv_heads and head_dim", in.Name, in.Dims)
			}
			if i == 0 && kind == "key" {
				k.KVHeads, k.HeadDim, k.PastType = in.Dims[1], in.Dims[3], in.DType
			} else if in.Dims[1] != k.KVHeads || in.Dims[3] != k.HeadDim || in.DType != k.PastType {
				return nil, fmt.Errorf("past input %q is %s %v, unlike %q", in.Name, in.DType, in.Dims, pastName(0, "key"))
			}
		}
	}
	if k.HasPast() && !k.mask {
		return nil, fmt.Errorf("the model takes a KV cache but no attention_mask input")
	}
	return k, nil
}

// feeds are the inputs for rows of equal length after a past of length past (all real tokens):
// input_ids, attention_mask over past + new, position_ids past…, and an empty cache when
// past is 0.
func (k *kvIO) feeds(rows [][]int, past int) map[string]*runtime.Tensor {
	b, t := len(rows), len(rows[0])
	ids := make([]int64, 0, b*t)
	for _, r := range rows {
		for _, id := range r {
			ids = append(ids, int64(id))
		}
	}
	f := map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{int64(b), int64(t)}, ids)}
	if k.mask {
		m := make([]int64, b*(past+t))
		for i := range m {
			m[i] = 1
		}
		f["attention_mask"] = runtime.I64([]int64{int64(b), int64(past + t)}, m)
	}
	if k.pos {
		p := make([]int64, 0, b*t)
		for range rows {
			for j := 0; j < t; j++ {
				p = append(p, int64(past+j))
			}
		}
		f["position_ids"] = runtime.I64([]int64{int64(b), int64(t)}, p)
	}
	if past == 0 {
		for i := 0; i < k.Layers; i++ {
			for _, kind := range kvKinds {
				shape := []int64{int64(b), k.KVHeads, 0, k.HeadDim}
				if k.PastType == runtime.Float32 || k.PastType == runtime.Undefined {
					f[pastName(i, kind)] = runtime.F32(shape, []float32{})
				} else {
					f[pastName(i, kind)] = runtime.RawTensor(k.PastType, shape, []byte{})
				}
			}
		}
	}
	return f
}
