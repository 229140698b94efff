package pipeline

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/hf"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

const tinyLlamaHF = `{"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
	"num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64,
	"max_position_embeddings": 32, "rms_norm_eps": 1e-5}`

// rewrite replaces model.safetensors in dir by its tensors after edit.
func rewrite(t *testing.T, dir string, edit func([]safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	p := filepath.Join(dir, safetensors.SingleFile)
	f, err := safetensors.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(p, edit(f.Tensors), nil); err != nil {
		t.Fatal(err)
	}
}

// Bad checkpoints fail with an error naming the file and the tensor, and leave nothing in the
// output folder.
func TestImportHFBadInput(t *testing.T) {
	single := filepath.Join("%s", safetensors.SingleFile)
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string // substrings; %s is the checkpoint folder
	}{
		{"no config.json", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, hf.ConfigFile)) },
			[]string{"%s: no config.json"}},
		{"missing shard", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors"))
		}, []string{filepath.Join("%s", safetensors.IndexFile), "shard " + filepath.Join("%s", "model-00002-of-00002.safetensors") + " is missing", `tensor "`}},
		{"missing tensor", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				var out []safetensors.Tensor
				for _, x := range ts {
					if x.Name != "model.layers.0.mlp.up_proj.weight" {
						out = append(out, x)
					}
				}
				return out
			})
		}, []string{single, `no tensor "model.layers.0.mlp.up_proj.weight"`, "shape [48 32]"}},
		{"wrong shape", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i, x := range ts {
					if x.Name == "model.layers.0.self_attn.k_proj.weight" {
						ts[i].Shape = []int64{32, 16} // [out, in] swapped: holds the same bytes
					}
				}
				return ts
			})
		}, []string{single, `tensor "model.layers.0.self_attn.k_proj.weight" has shape [32 16]; config.json needs [16 32]`}},
		{"fp8 dtype", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i, x := range ts {
					if x.Name == "model.layers.0.mlp.down_proj.weight" {
						ts[i].DType, ts[i].Shape = "F8_E4M3", []int64{32, 48, 4}
					}
				}
				return ts
			})
		}, []string{single, `tensor "model.layers.0.mlp.down_proj.weight": dtype F8_E4M3 is not supported`}},
		{"unsupported dtype", func(t *testing.T, dir string) {
			rewrite(t, dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i, x := range ts {
					if x.Name == "model.norm.weight" {
						ts[i].DType, ts[i].Shape = "I64", []int64{16} // 128 bytes, as 32 float32
					}
				}
				return ts
			})
		}, []string{single, `tensor "model.norm.weight": dtype I64 is not supported (F32, F16, BF16)`}},
		{"truncated header", func(t *testing.T, dir string) {
			p := filepath.Join(dir, safetensors.SingleFile)
			b, _ := os.ReadFile(p)
			n := binary.LittleEndian.Uint64(b)
			os.WriteFile(p, b[:8+n/2], 0o644)
		}, []string{single, "truncated header"}},
		{"offsets past the end", func(t *testing.T, dir string) {
			p := filepath.Join(dir, safetensors.SingleFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-10], 0o644)
		}, []string{single, "run past the end of the file", `tensor "`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ckpt")
			shards := 1
			if c.name == "missing shard" {
				shards = 2
			}
			if err := hf.WriteRandom(dir, []byte(tinyLlamaHF), hf.RandomOptions{Seed: 3, Shards: shards}); err != nil {
				t.Fatal(err)
			}
			c.setup(t, dir)
			outDir := t.TempDir()
			_, err := Import(ImportOptions{Format: "hf", Source: dir, Out: filepath.Join(outDir, "m.onnx")})
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			abs, _ := filepath.Abs(dir)
			for _, w := range c.want {
				w = strings.ReplaceAll(w, "%s", abs)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Errorf("output folder holds %d entries", len(ents))
			}
		})
	}
}

// greedy runs n greedy steps from BOS, recomputing the whole sequence each step.
func greedy(t *testing.T, m *onnx.Model, n int) []int64 {
	t.Helper()
	seq := []int64{1}
	for step := 0; step < n; step++ {
		_, l := testkit.RunLogits(t, m, 1, seq, nil)
		last := l[(len(seq)-1)*512:]
		best := 0
		for i, v := range last {
			if v > last[best] {
				best = i
			}
		}
		seq = append(seq, int64(best))
	}
	return seq[1:]
}

// stories260K written in the Hugging Face layout (q/k rows permuted as transformers'
// conversion script does) imports into a model that gives llama2.c's golden greedy ids, from
// one F32 file and from two BF16 shards with an index.
func TestImportHFStories(t *testing.T) {
	testkit.ORT(t)
	ref, err := llama2c.Import(testkit.Shared(t, "models/stories260K/stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{1, 403, 407, 261, 378, 432, 383, 286, 261, 376}
	_, want := testkit.RunLogits(t, ref, 1, ids, nil)
	for _, c := range []struct {
		dtype  string
		shards int
	}{{"F32", 1}, {"BF16", 2}} {
		t.Run(c.dtype, func(t *testing.T) {
			dir := testkit.StoriesHF(t, c.dtype, c.shards)
			out := filepath.Join(t.TempDir(), "stories.onnx")
			rep, err := Import(ImportOptions{Format: "hf", Source: dir, Out: out})
			if err != nil {
				t.Fatal(err)
			}
			m, err := onnx.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			_, got := testkit.RunLogits(t, m, 1, ids, nil)
			d := testkit.MaxDiff(got, want)
			t.Logf("%s: %s -> %s, %d converted; max |logit - llama2c import| = %.3g", c.dtype, rep.SourceDType, rep.DType, rep.Converted, d)
			seq := greedy(t, m, len(testkit.StoriesGreedy))
			low := 0
			for _, x := range m.Graph().GetInitializer() {
				if onnx.DataType(x) == onnxpb.TensorProto_BFLOAT16 {
					low++
				}
			}
			if c.dtype == "F32" {
				if !(d <= 1e-4) {
					t.Errorf("logits differ from the llama2c import by %.3g", d)
				}
				if rep.DType != "fp32" || rep.Converted != 0 || low != 0 {
					t.Errorf("dtype %s, %d converted, %d bf16 tensors", rep.DType, rep.Converted, low)
				}
			} else {
				// The 35 linears and the (tied) embedding stay bf16 behind Casts; rounding the
				// weights to 8 significant bits moves the logits (0.08 measured, of logits up
				// to 17) but not the greedy argmax.
				if !(d <= 0.2) {
					t.Errorf("bf16 logits differ from the llama2c import by %.3g", d)
				}
				if rep.DType != "bf16" || rep.Converted != 36 || low != 36 {
					t.Errorf("dtype %s, %d converted, %d bf16 tensors", rep.DType, rep.Converted, low)
				}
			}
			if fmt.Sprint(seq) != fmt.Sprint(testkit.StoriesGreedy) {
				t.Errorf("greedy ids %v\nwant       %v", seq, testkit.StoriesGreedy)
			}
		})
	}
}

// A shard truncated while the import reads it through a file mapping (here right after the
// first transposed tensor is mapped) is an error naming the shard and the tensor, not a SIGBUS
// that kills the process; nothing is left in the output folder.
func TestImportHFShardTruncatedWhileMapped(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := hf.WriteRandom(dir, []byte(tinyLlamaHF), hf.RandomOptions{Seed: 3, Shards: 2}); err != nil {
		t.Fatal(err)
	}
	var truncated string
	onnx.FaultHook = func(point string) error {
		if p, ok := strings.CutPrefix(point, "save-mapped "); ok && truncated == "" {
			truncated = p
			if err := os.Truncate(p, 0); err != nil {
				return err
			}
		}
		return nil
	}
	defer func() { onnx.FaultHook = nil }()
	outDir := t.TempDir()
	_, err := Import(ImportOptions{Format: "hf", Source: dir, Out: filepath.Join(outDir, "m.onnx")})
	if truncated == "" {
		t.Fatal("no tensor was read through a mapping")
	}
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
	for _, w := range []string{`transform tensor "model.`, "its data in " + truncated + " could not be read", "truncated"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nlacks %q", err, w)
		}
	}
	if !strings.Contains(truncated, "model-0000") {
		t.Errorf("the mapped file %s is not a shard", truncated)
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
		t.Errorf("output folder holds %d entries", len(ents))
	}
}
