package deploy

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
)

// DefaultShardBytes is where a Hugging Face checkpoint is split into shards: transformers'
// save_pretrained default max_shard_size "5GB" (5·10⁹ bytes).
const DefaultShardBytes int64 = 5_000_000_000

// safetensors dtype names of the float types a checkpoint holds.
var stDType = map[onnxpb.TensorProto_DataType]string{
	onnxpb.TensorProto_FLOAT: "F32", onnxpb.TensorProto_FLOAT16: "F16", onnxpb.TensorProto_BFLOAT16: "BF16", onnxpb.TensorProto_DOUBLE: "F64",
}

// hfParamName is the checkpoint name of an initializer, or "" for one that is not a
// parameter (RoPE tables, masks, shape constants). Initializers named after the checkpoint's
// modules keep their names; an anonymous linear weight (onnx::MatMul_123) takes the name of its
// node's module scope (/model/layers.0/self_attn/q_proj/MatMul → model.layers.0.self_attn.q_proj.weight).
func hfParamName(name string, lin *layers.Linear) string {
	param := func(s string) bool {
		return (strings.HasPrefix(s, "model.") || strings.HasPrefix(s, "lm_head.") || strings.HasPrefix(s, "transformer.")) &&
			(strings.HasSuffix(s, ".weight") || strings.HasSuffix(s, ".bias")) && !strings.Contains(s, "rotary_emb") && !strings.Contains(s, "causal_mask")
	}
	if param(name) {
		return name
	}
	if lin != nil {
		scope := strings.TrimPrefix(lin.Node, "/")
		if i := strings.LastIndex(scope, "/"); i > 0 {
			scope = scope[:i]
		}
		if s := strings.ReplaceAll(scope, "/", ".") + ".weight"; param(s) {
			return s
		}
	}
	return ""
}

// interleavedRoPE reports whether the graph's q and k rows are in llama2.c's interleaved-pair
// order: the LLaMA graphs our builder makes (llama2.c imports and synthetic models) are, and
// record their config as metadata facts; Hugging Face imports carry hf:config and keep the
// checkpoint's rotate-half order.
func interleavedRoPE(f *Facts) bool { return f.Verbatim == nil && f.ModelType() == "llama" }

// permuteRoPE reorders the rows of w [heads·hd, in] (elem bytes each) from interleaved pairs
// (row h·hd + 2i + j) to Hugging Face's rotate-half halves (row h·hd + j·hd/2 + i), the
// permutation of transformers' convert_llama_weights_to_hf.
func permuteRoPE(w []byte, heads, rows, rowBytes int) ([]byte, error) {
	if heads <= 0 || rows%heads != 0 || (rows/heads)%2 != 0 {
		return nil, fmt.Errorf("cannot permute %d rows into %d heads of pairs", rows, heads)
	}
	hd := rows / heads
	out := make([]byte, len(w))
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				src := h*hd + 2*i + j
				dst := h*hd + j*hd/2 + i
				copy(out[dst*rowBytes:(dst+1)*rowBytes], w[src*rowBytes:(src+1)*rowBytes])
			}
		}
	}
	return out, nil
}

// transpose2D turns a row-major [r, c] matrix of es-byte elements into [c, r].
func transpose2D(b []byte, r, c, es int) []byte {
	out := make([]byte, len(b))
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			copy(out[(j*r+i)*es:(j*r+i+1)*es], b[(i*c+j)*es:(i*c+j+1)*es])
		}
	}
	return out
}

func readAll(m *onnx.Model, t *onnxpb.TensorProto) ([]byte, error) {
	var buf bytes.Buffer
	err := m.ReadChunks(t, 1<<24, func(b []byte) error { _, err := buf.Write(b); return err })
	return buf.Bytes(), err
}

// hfTensors lists the checkpoint's tensors: every parameter under its checkpoint name, linear
// weights in [out, in] layout (GPT-2's Conv1D ones in [in, out]), q/k rows in rotate-half order, and the LM head left out when the
// config ties it to the embedding and it still equals it (else the config is untied). Tensor
// bytes are produced one at a time while the file is written.
func hfTensors(m *onnx.Model, f *Facts, warn func(string)) ([]stTensor, bool, error) {
	ls, err := layers.Find(m)
	if err != nil {
		return nil, false, err
	}
	lin := map[string]*layers.Linear{}
	for i := range ls {
		lin[ls[i].Weight] = &ls[i]
	}
	tied, _ := f.Config["tie_word_embeddings"].(bool)
	var ts []stTensor
	var skipped []string
	seen := map[string]string{}
	var embed, head *onnxpb.TensorProto
	for _, t := range m.Graph().GetInitializer() {
		dt := onnxpb.TensorProto_DataType(t.GetDataType())
		st, isFloat := stDType[dt]
		l := lin[t.GetName()]
		name := hfParamName(t.GetName(), l)
		if name == "" || !isFloat {
			if isFloat && onnx.NumElements(t.GetDims()) > 1 && l != nil {
				return nil, false, fmt.Errorf("deploy: linear %s: weight %s has no checkpoint name (its node is not in a Hugging Face module scope)", l.Node, t.GetName())
			}
			if isFloat && onnx.NumElements(t.GetDims()) > 1 && !strings.Contains(t.GetName(), "rotary_emb") && !strings.Contains(t.GetName(), "causal_mask") {
				skipped = append(skipped, t.GetName())
			}
			continue
		}
		if prev, dup := seen[name]; dup {
			return nil, false, fmt.Errorf("deploy: initializers %s and %s both map to checkpoint tensor %s", prev, t.GetName(), name)
		}
		seen[name] = t.GetName()
		switch name {
		case "model.embed_tokens.weight":
			embed = t
		case "lm_head.weight":
			head = t
		}
		t, l := t, l
		shape := append([]int64(nil), t.GetDims()...)
		es := onnx.ElemSize(dt)
		size := onnx.NumElements(shape) * int64(es)
		// [out, in] for nn.Linear (the head too, which may be the embedding read through a
		// Transpose); Conv1D families keep [in, out] for the block linears.
		wantInOut := l != nil && f.fam.conv1D && !l.Head
		transposeIt := l != nil && len(shape) == 2 && l.Transposed == wantInOut
		if transposeIt {
			shape = []int64{shape[1], shape[0]}
		}
		var heads int
		if l != nil && interleavedRoPE(f) {
			switch {
			case strings.HasSuffix(name, "self_attn.q_proj.weight"):
				heads = f.Heads()
			case strings.HasSuffix(name, "self_attn.k_proj.weight"):
				heads = f.KVHeads()
			}
		}
		ts = append(ts, stTensor{name: name, dtype: st, shape: shape, size: size, write: func(w io.Writer) error {
			if !transposeIt && heads == 0 {
				return m.ReadChunks(t, 1<<22, func(b []byte) error { _, err := w.Write(b); return err })
			}
			b, err := readAll(m, t)
			if err != nil {
				return err
			}
			if transposeIt {
				b = transpose2D(b, int(t.GetDims()[0]), int(t.GetDims()[1]), es)
			}
			if heads > 0 {
				if b, err = permuteRoPE(b, heads, int(shape[0]), int(shape[1])*es); err != nil {
					return err
				}
			}
			_, err = w.Write(b)
			return err
		}})
	}
	if len(skipped) > 0 {
		warn(fmt.Sprintf("%d float initializers are not checkpoint parameters and were left out (first: %s)", len(skipped), skipped[0]))
	}
	if tied && head != nil && embed != nil {
		same, err := headIsEmbedding(m, head, embed, lin[head.GetName()])
		if err != nil {
			return nil, false, err
		}
		if same {
			for i := range ts {
				if ts[i].name == "lm_head.weight" {
					ts = append(ts[:i], ts[i+1:]...)
					break
				}
			}
		} else {
			tied = false
			warn("lm_head.weight no longer equals the embedding: the checkpoint keeps it and config.json says tie_word_embeddings false")
		}
	}
	return ts, tied, nil
}

// headIsEmbedding reports whether the LM head (as the checkpoint stores it, [vocab, hidden])
// equals the embedding bit for bit.
func headIsEmbedding(m *onnx.Model, head, embed *onnxpb.TensorProto, l *layers.Linear) (bool, error) {
	if head.GetDataType() != embed.GetDataType() {
		return false, nil
	}
	h, err := readAll(m, head)
	if err != nil {
		return false, err
	}
	e, err := readAll(m, embed)
	if err != nil {
		return false, err
	}
	if l != nil && !l.Transposed && len(head.GetDims()) == 2 {
		h = transpose2D(h, int(head.GetDims()[0]), int(head.GetDims()[1]), onnx.ElemSize(onnxpb.TensorProto_DataType(head.GetDataType())))
	}
	return bytes.Equal(h, e), nil
}

// FinishHF turns the graph the stage saved at ModelPath into a Hugging Face checkpoint folder
// (safetensors, config.json, generation_config.json, the tokenizer, README.md) and moves it into
// place. The weights must be merged: a graph with adapters is refused (export with --merge
// dense or sparse; the adapter alone is --peft). shardBytes 0 means DefaultShardBytes.
func (f *Folder) FinishHF(o Options, shardBytes int64) (*Report, error) {
	if shardBytes <= 0 {
		shardBytes = DefaultShardBytes
	}
	return f.finish(o, shardBytes)
}
