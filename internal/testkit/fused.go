package testkit

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Attention operators a Fused graph can use.
const (
	GQA = "GroupQueryAttention" // any kv heads
	MHA = "MultiHeadAttention"  // kv heads = heads
)

// FusedAttentions are the attention operators Fused writes, for tests that try each.
var FusedAttentions = []string{GQA, MHA}

// FusedTiny writes the "tiny" preset with weights from seed (into the test's folder: the path
// plain) and returns its Fused form with attention op attn, and the config: 4 KV heads for
// GroupQueryAttention (the preset's grouped heads), all 8 for MultiHeadAttention (which has no
// grouping).
func FusedTiny(t testing.TB, attn string, seed int64) (fused *onnx.Model, plain string, cfg llama.Config) {
	t.Helper()
	cfg, err := llama.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	if attn == MHA {
		cfg.KVHeads = cfg.Heads
	}
	plain = filepath.Join(t.TempDir(), "plain.onnx")
	if err := llama.WriteSynthetic(plain, cfg, seed, onnxpb.TensorProto_FLOAT); err != nil {
		t.Fatal(err)
	}
	pm, err := onnx.Load(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	if fused, err = Fused(pm, cfg, attn); err != nil {
		t.Fatal(err)
	}
	return fused, plain, cfg
}

// Fused rebuilds plain (a models/llama graph: its weights are read by name) the way
// onnxruntime's GenAI model builder and transformer optimizer write a LLaMA: RMSNorms as
// SimplifiedLayerNormalization (the first) and com.microsoft SkipSimplifiedLayerNormalization
// (residual add + norm, the sum as its fourth output), com.microsoft RotaryEmbedding on q and
// k (interleaved pairs, as llama2.c rotates), and attention as one com.microsoft
// GroupQueryAttention or MultiHeadAttention with the KV cache. The interface is optimum's with
// past: input_ids, attention_mask, position_ids, past_key_values.{i}.key|value → logits,
// present.{i}.key|value. It computes what plain computes (tested in onnxruntime).
func Fused(plain *onnx.Model, cfg llama.Config, attention string) (*onnx.Model, error) {
	if attention != GQA && attention != MHA {
		return nil, fmt.Errorf("fused fixture: attention %q (want %s or %s)", attention, GQA, MHA)
	}
	if attention == MHA && cfg.KVHeads != cfg.Heads {
		return nil, fmt.Errorf("fused fixture: %s needs kv heads = heads, have %d/%d", MHA, cfg.KVHeads, cfg.Heads)
	}
	f := &fused{b: onnx.NewBuilder("fused_llama", llama.Opset), plain: plain, cfg: cfg, attn: attention}
	out := f.forward()
	if f.err != nil {
		return nil, f.err
	}
	m, err := f.b.Model()
	if err != nil || out == "" {
		return nil, fmt.Errorf("fused fixture: %v", err)
	}
	m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: ptrStr("com.microsoft"), Version: ptrI64(1)})
	return m, nil
}

type fused struct {
	b     *onnx.Builder
	plain *onnx.Model
	cfg   llama.Config
	attn  string
	err   error
}

// weight copies plain's initializer name into the graph under the GenAI builder's name.
func (f *fused) weight(plainName, name string) string {
	if f.err != nil {
		return ""
	}
	t := f.plain.Initializer(plainName)
	if t == nil {
		f.err = fmt.Errorf("fused fixture: the plain model has no %s", plainName)
		return ""
	}
	v, err := f.plain.Float32s(t)
	if err != nil {
		f.err = fmt.Errorf("fused fixture: %s: %w", plainName, err)
		return ""
	}
	return f.b.Const(name, onnx.Float32Tensor(name, onnx.Dims(t), v))
}

func (f *fused) i64(name string, v ...int64) string {
	return f.b.Const(name, onnx.Int64Tensor(name, []int64{int64(len(v))}, v))
}

func (f *fused) ms(op, name string, inputs []string, nOut int, attrs ...*onnxpb.AttributeProto) []string {
	outs := f.b.OpN(op, name, inputs, nOut, attrs...)
	if outs != nil {
		f.b.Graph().Node[len(f.b.Graph().Node)-1].Domain = ptrStr("com.microsoft")
	}
	return outs
}

func ptrStr(s string) *string { return &s }

func ptrI64(v int64) *int64 { return &v }

func (f *fused) forward() string {
	b, c := f.b, f.cfg
	hd := int64(c.HeadDim())
	ids := b.Input("input_ids", onnxpb.TensorProto_INT64, "batch_size", "sequence_length")
	mask := b.Input("attention_mask", onnxpb.TensorProto_INT64, "batch_size", "total_sequence_length")
	pos := b.Input("position_ids", onnxpb.TensorProto_INT64, "batch_size", "sequence_length")
	emb := f.weight("model.embed_tokens.weight", "model.embed_tokens.weight")
	x := b.Op("Gather", "/model/embed_tokens/Gather", []string{emb, ids})
	cos := f.weight(llama.CosName, "cos_cache")
	sin := f.weight(llama.SinName, "sin_cache")
	eps := onnx.AttrFloat("epsilon", c.NormEps)

	// What the attention needs about the mask: GQA's seqlens_k (real tokens − 1) and total length.
	var seqlens, total, keyMask string
	if f.attn == GQA {
		s := b.Op("ReduceSum", "/model/attn_mask_reformat/ReduceSum", []string{mask, f.i64("/model/constants/axis_1", 1)}, onnx.AttrInt("keepdims", 0))
		s = b.Op("Sub", "/model/attn_mask_reformat/Sub", []string{s, f.i64("/model/constants/one", 1)})
		seqlens = b.Op("Cast", "/model/attn_mask_reformat/Cast", []string{s}, onnx.AttrInt("to", int64(onnxpb.TensorProto_INT32)))
		sh := b.Op("Shape", "/model/attn_mask_reformat/Shape", []string{mask})
		g := b.Op("Gather", "/model/attn_mask_reformat/Gather", []string{sh, b.Const("/model/constants/one_scalar", onnx.Int64Tensor("", nil, []int64{1}))}, onnx.AttrInt("axis", 0))
		total = b.Op("Cast", "/model/attn_mask_reformat/Cast_1", []string{g}, onnx.AttrInt("to", int64(onnxpb.TensorProto_INT32)))
	} else {
		keyMask = b.Op("Cast", "/model/attn_mask_reformat/Cast", []string{mask}, onnx.AttrInt("to", int64(onnxpb.TensorProto_INT32)))
	}

	var residual, h string
	for i := 0; i < c.Layers && f.err == nil; i++ {
		p := fmt.Sprintf("/model/layers.%d", i)
		lw := func(m string) string { return llama.LayerWeight(i, m) }
		inNorm := f.weight(lw("input_layernorm"), fmt.Sprintf("model.layers.%d.input_layernorm.weight", i))
		if i == 0 {
			h = f.b.Op("SimplifiedLayerNormalization", p+"/input_layernorm/LayerNorm", []string{x, inNorm}, eps, onnx.AttrInt("axis", -1))
			residual = x
		} else {
			o := f.ms("SkipSimplifiedLayerNormalization", p+"/input_layernorm/SkipLayerNorm", []string{h, residual, inNorm}, 4, eps)
			if o == nil {
				return ""
			}
			h, residual = o[0], o[3]
		}
		lin := func(module, short, in string) string {
			w := f.weight(lw(module), fmt.Sprintf("model.layers.%d.%s.MatMul.weight", i, strings.ReplaceAll(short, "/", ".")))
			return b.Op("MatMul", p+"/"+short+"/MatMul", []string{in, w})
		}
		q := lin("self_attn.q_proj", "attn/q_proj", h)
		k := lin("self_attn.k_proj", "attn/k_proj", h)
		v := lin("self_attn.v_proj", "attn/v_proj", h)
		q = f.ms("RotaryEmbedding", p+"/attn/q_rotary/RotaryEmbedding", []string{q, pos, cos, sin}, 1, onnx.AttrInt("interleaved", 1), onnx.AttrInt("num_heads", int64(c.Heads)))[0]
		k = f.ms("RotaryEmbedding", p+"/attn/k_rotary/RotaryEmbedding", []string{k, pos, cos, sin}, 1, onnx.AttrInt("interleaved", 1), onnx.AttrInt("num_heads", int64(c.KVHeads)))[0]
		pastK := b.Input(fmt.Sprintf("past_key_values.%d.key", i), onnxpb.TensorProto_FLOAT, "batch_size", int64(c.KVHeads), "past_sequence_length", hd)
		pastV := b.Input(fmt.Sprintf("past_key_values.%d.value", i), onnxpb.TensorProto_FLOAT, "batch_size", int64(c.KVHeads), "past_sequence_length", hd)
		scale := onnx.AttrFloat("scale", float32(1/math.Sqrt(float64(hd))))
		var outs []string
		if f.attn == GQA {
			outs = f.b.OpOut("GroupQueryAttention", p+"/attn/GroupQueryAttention", []string{q, k, v, pastK, pastV, seqlens, total},
				[]string{p + "/attn/GroupQueryAttention/output_0", fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i)},
				onnx.AttrInt("num_heads", int64(c.Heads)), onnx.AttrInt("kv_num_heads", int64(c.KVHeads)), scale)
		} else {
			outs = f.b.OpOut("MultiHeadAttention", p+"/attn/MultiHeadAttention", []string{q, k, v, "", keyMask, "", pastK, pastV},
				[]string{p + "/attn/MultiHeadAttention/output_0", fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i)},
				onnx.AttrInt("num_heads", int64(c.Heads)), onnx.AttrInt("unidirectional", 1), scale)
		}
		if outs == nil {
			return ""
		}
		f.b.Graph().Node[len(f.b.Graph().Node)-1].Domain = ptrStr("com.microsoft")
		o := lin("self_attn.o_proj", "attn/o_proj", outs[0])
		postNorm := f.weight(lw("post_attention_layernorm"), fmt.Sprintf("model.layers.%d.post_attention_layernorm.weight", i))
		n := f.ms("SkipSimplifiedLayerNormalization", p+"/post_attention_layernorm/SkipLayerNorm", []string{o, residual, postNorm}, 4, eps)
		if n == nil {
			return ""
		}
		h, residual = n[0], n[3]
		gate := lin("mlp.gate_proj", "mlp/gate_proj", h)
		act := b.Op("Mul", p+"/mlp/act_fn/Mul", []string{gate, b.Op("Sigmoid", p+"/mlp/act_fn/Sigmoid", []string{gate})})
		up := lin("mlp.up_proj", "mlp/up_proj", h)
		h = lin("mlp.down_proj", "mlp/down_proj", b.Op("Mul", p+"/mlp/Mul", []string{act, up}))
	}
	if f.err != nil {
		return ""
	}
	fin := f.weight("model.norm.weight", "model.norm.weight")
	n := f.ms("SkipSimplifiedLayerNormalization", "/model/norm/SkipLayerNorm", []string{h, residual, fin}, 4, eps)
	if n == nil {
		return ""
	}
	head := f.weight("lm_head.weight", "lm_head.MatMul.weight")
	out := b.OpOut("MatMul", "/lm_head/MatMul", []string{n[0], head}, []string{"logits"})
	if out == nil {
		return ""
	}
	b.Output("logits", onnxpb.TensorProto_FLOAT, "batch_size", "sequence_length", int64(c.Vocab))
	for i := 0; i < c.Layers; i++ {
		for _, kind := range []string{"key", "value"} {
			b.Output(fmt.Sprintf("present.%d.%s", i, kind), onnxpb.TensorProto_FLOAT, "batch_size", int64(c.KVHeads), "total_sequence_length", hd)
		}
	}
	return out[0]
}
