package llama2c

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
)

// headerBytes is the legacy header: 7 little-endian int32.
const headerBytes = 7 * 4

// versionMagic starts the newer llama2.c exports (version 1 and 2), which this importer
// does not read.
const versionMagic = 0x616b3432 // "ak42"

// Checkpoint is a parsed header.
type Checkpoint struct {
	Config llama.Config
	// SharedClassifier is true when the vocab field is positive: the head is the embedding.
	SharedClassifier bool
}

// ReadHeader reads and checks the header of the checkpoint at path.
func ReadHeader(path string) (Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("llama2c: %w", err)
	}
	defer f.Close()
	var h [headerBytes]byte
	if n, err := io.ReadFull(f, h[:]); err != nil {
		return Checkpoint{}, fmt.Errorf("llama2c %s: truncated header (%d of %d bytes)", path, n, headerBytes)
	}
	ck, err := parseHeader(h[:])
	if err != nil {
		return Checkpoint{}, fmt.Errorf("llama2c %s: %w", path, err)
	}
	return ck, nil
}

func parseHeader(h []byte) (Checkpoint, error) {
	if binary.LittleEndian.Uint32(h) == versionMagic {
		return Checkpoint{}, fmt.Errorf("bad header: versioned llama2.c export (magic \"ak42\", version %d); only the legacy v0 format is supported", int32(binary.LittleEndian.Uint32(h[4:])))
	}
	var v [7]int32
	for i := range v {
		v[i] = int32(binary.LittleEndian.Uint32(h[4*i:]))
	}
	ck := Checkpoint{SharedClassifier: v[5] > 0}
	vocab := v[5]
	if vocab < 0 {
		vocab = -vocab
	}
	const limit = 1 << 20
	for i, x := range []int32{v[0], v[1], v[2], v[3], v[4], vocab, v[6]} {
		if x <= 0 || x > limit {
			names := []string{"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"}
			return ck, fmt.Errorf("bad header: %s = %d (header %v)", names[i], x, v)
		}
	}
	ck.Config = llama.Config{
		Dim: int(v[0]), HiddenDim: int(v[1]), Layers: int(v[2]), Heads: int(v[3]), KVHeads: int(v[4]),
		Vocab: int(vocab), MaxSeq: int(v[6]), NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: ck.SharedClassifier,
	}
	if err := ck.Config.Validate(); err != nil {
		return ck, fmt.Errorf("bad header %v: %w", v, err)
	}
	return ck, nil
}

// array is one float32 array of the checkpoint, in file order.
type array struct {
	name string
	n    int64
}

func (ck Checkpoint) layout() []array {
	c := ck.Config
	d, h, l := int64(c.Dim), int64(c.HiddenDim), int64(c.Layers)
	kv, v, s, hd := int64(c.KVDim()), int64(c.Vocab), int64(c.MaxSeq), int64(c.HeadDim())
	a := []array{
		{"token_embedding_table", v * d}, {"rms_att_weight", l * d},
		{"wq", l * d * d}, {"wk", l * kv * d}, {"wv", l * kv * d}, {"wo", l * d * d},
		{"rms_ffn_weight", l * d}, {"w1", l * h * d}, {"w2", l * d * h}, {"w3", l * h * d},
		{"rms_final_weight", d}, {"freq_cis_real", s * hd / 2}, {"freq_cis_imag", s * hd / 2},
	}
	if !ck.SharedClassifier {
		a = append(a, array{"wcls", v * d})
	}
	return a
}

// Import reads the llama2.c checkpoint at path and builds its LLaMA graph.
func Import(path string) (*onnx.Model, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llama2c: %w", err)
	}
	if len(raw) < headerBytes {
		return nil, fmt.Errorf("llama2c %s: truncated header (%d of %d bytes)", path, len(raw), headerBytes)
	}
	ck, err := parseHeader(raw[:headerBytes])
	if err != nil {
		return nil, fmt.Errorf("llama2c %s: %w", path, err)
	}
	arrays := map[string][]float32{}
	off := int64(headerBytes)
	for _, a := range ck.layout() {
		end := off + 4*a.n
		if end > int64(len(raw)) {
			return nil, fmt.Errorf("llama2c %s: truncated: %s needs bytes %d..%d, file has %d", path, a.name, off, end, len(raw))
		}
		arrays[a.name] = floats(raw[off:end])
		off = end
	}
	if off != int64(len(raw)) {
		return nil, fmt.Errorf("llama2c %s: %d trailing bytes after the weights the header %+v describes (not a legacy v0 checkpoint?)", path, int64(len(raw))-off, ck.Config)
	}
	m, err := llama.Build(ck.Config, llama.Weights(weights(ck, arrays)))
	if err != nil {
		return nil, fmt.Errorf("llama2c %s: %w", path, err)
	}
	m.Proto.ProducerName = ptr("shears llama2c import")
	return m, nil
}

func ptr(s string) *string { return &s }

// weights maps the checkpoint arrays to the llama graph's names and layout.
func weights(ck Checkpoint, a map[string][]float32) map[string][]float32 {
	c := ck.Config
	d, h, kv := c.Dim, c.HiddenDim, c.KVDim()
	w := map[string][]float32{
		"model.embed_tokens.weight": a["token_embedding_table"],
		"model.norm.weight":         a["rms_final_weight"],
		llama.CosName:               a["freq_cis_real"],
		llama.SinName:               a["freq_cis_imag"],
	}
	cls := a["token_embedding_table"]
	if !ck.SharedClassifier {
		cls = a["wcls"]
	}
	w["lm_head.weight"] = transpose(cls, c.Vocab, d)
	// layer slices [out, in] of each stacked array, transposed to [in, out]
	linear := []struct {
		src, module string
		out, in     int
	}{
		{"wq", "self_attn.q_proj", d, d}, {"wk", "self_attn.k_proj", kv, d}, {"wv", "self_attn.v_proj", kv, d},
		{"wo", "self_attn.o_proj", d, d}, {"w1", "mlp.gate_proj", h, d}, {"w2", "mlp.down_proj", d, h},
		{"w3", "mlp.up_proj", h, d},
	}
	for i := 0; i < c.Layers; i++ {
		w[llama.LayerWeight(i, "input_layernorm")] = a["rms_att_weight"][i*d : (i+1)*d]
		w[llama.LayerWeight(i, "post_attention_layernorm")] = a["rms_ffn_weight"][i*d : (i+1)*d]
		for _, l := range linear {
			n := l.out * l.in
			w[llama.LayerWeight(i, l.module)] = transpose(a[l.src][i*n:(i+1)*n], l.out, l.in)
		}
	}
	return w
}

func floats(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// transpose returns the [cols, rows] transpose of the row-major [rows, cols] matrix m.
func transpose(m []float32, rows, cols int) []float32 {
	t := make([]float32, len(m))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			t[c*rows+r] = m[r*cols+c]
		}
	}
	return t
}
