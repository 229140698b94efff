package merge

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/lora"
)

// PEFT file names (Hugging Face PEFT's save_pretrained layout).
const (
	PEFTConfigFile  = "adapter_config.json"
	PEFTWeightsFile = "adapter_model.safetensors"
)

// PEFTKeyPrefix is what PEFT puts before a module name in its state dict.
const PEFTKeyPrefix = "base_model.model."

// PEFTConfig is the adapter_config.json written by WritePEFT: the LoraConfig fields PEFT reads
// (no others, since older PEFT versions refuse unknown keys).
type PEFTConfig struct {
	PeftType          string             `json:"peft_type"`
	TaskType          string             `json:"task_type"`
	BaseModel         string             `json:"base_model_name_or_path"`
	R                 int                `json:"r"`
	LoraAlpha         float64            `json:"lora_alpha"`
	LoraDropout       float64            `json:"lora_dropout"`
	TargetModules     []string           `json:"target_modules"`
	RankPattern       map[string]int     `json:"rank_pattern"`
	AlphaPattern      map[string]float64 `json:"alpha_pattern"`
	Bias              string             `json:"bias"`
	FanInFanOut       bool               `json:"fan_in_fan_out"`
	InferenceMode     bool               `json:"inference_mode"`
	InitLoraWeights   bool               `json:"init_lora_weights"`
	UseRSLoRA         bool               `json:"use_rslora"`
	ModulesToSave     []string           `json:"modules_to_save"`
	LayersToTransform []int              `json:"layers_to_transform"`
}

// slicePart is one q, k or v adapter of a fused linear in PEFT layout: A [r, in], B [hi−lo, r].
type slicePart struct {
	at, bt        []float32
	r, lo, hi, in int64
}

// WritePEFT writes the sub-adapter at ranks as a PEFT LoRA adapter in dir (created if needed):
// adapter_model.safetensors holds, per module, base_model.model.<module>.lora_A.weight
// [r, in] = A[:, :r]ᵀ and lora_B.weight [out, r] = B[:r, :]ᵀ (PyTorch layout), float32.
// PEFT scales by lora_alpha / r, so each module gets r = its active rank and lora_alpha =
// scale · r, which keeps the trained scale alpha / r_max (METHOD §2: a stock loader reading
// r = 24 with alpha 64 would scale by 2.67 instead of 2). The most common rank is the config's
// r; modules with other ranks go to rank_pattern and alpha_pattern under their full names.
// Module names are the super-network's (Hugging Face names when the model has them); a fused
// qkv linear's three slice adapters are written as one block-diagonal module of their summed
// rank under the fused linear's name. The
// Shears metadata (scale, ranks, r_max, sparse_adapter) is in the safetensors __metadata__. A
// SparseAdapter network's delta is masked by the base's zeros, which stock PEFT does not do:
// merge with --merge sparse to reproduce it.
func WritePEFT(dir string, super *onnx.Model, ranks lora.Ranks, baseModel string) (*PEFTConfig, error) {
	meta, err := lora.ReadConfig(super)
	if err != nil {
		return nil, fmt.Errorf("merge: peft: %w", err)
	}
	if len(meta.Fixed) > 0 {
		return nil, fmt.Errorf("merge: peft: %s is an extracted sub-adapter, not a super-network", name(super))
	}
	if _, err := Check(meta, ranks); err != nil {
		return nil, err
	}
	rMax := int64(meta.RMax)
	var tensors []safetensors.Tensor
	count := map[int]int{}
	rankOf := map[string]int{}
	targets := map[string]bool{}
	add := func(name string, at, bt []float32, r, in, out int64) {
		key := PEFTKeyPrefix + name
		tensors = append(tensors,
			safetensors.F32(key+".lora_A.weight", []int64{r, in}, at),
			safetensors.F32(key+".lora_B.weight", []int64{out, r}, bt))
		count[int(r)]++
		rankOf[name] = int(r)
		targets[name[strings.LastIndex(name, ".")+1:]] = true // PEFT matches name suffixes
	}
	fused := map[string][]slicePart{}
	var fusedOrder []string
	for _, mod := range meta.Modules {
		r := int64(ranks[mod.Group])
		a, b, err := readAB(super, meta, mod)
		if err != nil {
			return nil, err
		}
		at := make([]float32, r*mod.In) // [r, in]
		for k := int64(0); k < r; k++ {
			for i := int64(0); i < mod.In; i++ {
				at[k*mod.In+i] = a[i*rMax+k]
			}
		}
		bt := make([]float32, mod.Out*r) // [out, r]
		for j := int64(0); j < mod.Out; j++ {
			for k := int64(0); k < r; k++ {
				bt[j*r+k] = b[k*mod.Out+j]
			}
		}
		if mod.Slice != nil {
			if fused[mod.Fused] == nil {
				fusedOrder = append(fusedOrder, mod.Fused)
			}
			fused[mod.Fused] = append(fused[mod.Fused], slicePart{at: at, bt: bt, r: r, lo: mod.Slice[0], hi: mod.Slice[1], in: mod.In})
			continue
		}
		add(mod.Name, at, bt, r, mod.In, mod.Out)
	}
	// A fused linear's q, k, v adapters are one PEFT module of rank R = r_q + r_k + r_v (PEFT
	// adapts the fused layer as a whole): lora_A stacks the three A's, lora_B is block-diagonal
	// (slice rows × that slice's rank columns), so B·A·x is the three slice deltas side by side.
	for _, name := range fusedOrder {
		parts := fused[name]
		var rr, out int64
		for _, p := range parts {
			rr += p.r
			out = max(out, p.hi)
		}
		in := parts[0].in
		a := make([]float32, 0, rr*in)
		b := make([]float32, out*rr)
		c := int64(0)
		for _, p := range parts {
			a = append(a, p.at...)
			for j := p.lo; j < p.hi; j++ {
				copy(b[j*rr+c:j*rr+c+p.r], p.bt[(j-p.lo)*p.r:(j-p.lo+1)*p.r])
			}
			c += p.r
		}
		add(name, a, b, rr, in, out)
	}
	common := 0
	for r, n := range count {
		if n > count[common] || n == count[common] && r > common {
			common = r
		}
	}
	cfg := &PEFTConfig{
		PeftType: "LORA", TaskType: "CAUSAL_LM", BaseModel: baseModel, R: common, LoraAlpha: meta.Scale * float64(common),
		LoraDropout: meta.Dropout, RankPattern: map[string]int{}, AlphaPattern: map[string]float64{}, Bias: "none",
		InferenceMode: true, InitLoraWeights: true,
	}
	for t := range targets {
		cfg.TargetModules = append(cfg.TargetModules, t)
	}
	sort.Strings(cfg.TargetModules)
	for m, r := range rankOf {
		if r != common {
			cfg.RankPattern[m] = r
			cfg.AlphaPattern[m] = meta.Scale * float64(r)
		}
	}
	rj, _ := json.Marshal(ranks)
	md := map[string]string{
		"format": "pt", "shears.scale": strconv.FormatFloat(meta.Scale, 'g', -1, 64), "shears.r_max": strconv.Itoa(meta.RMax),
		"shears.ranks": string(rj), "shears.sparse_adapter": strconv.FormatBool(meta.SparseAdapter),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("merge: peft: %w", err)
	}
	if err := safetensors.Write(filepath.Join(dir, PEFTWeightsFile), tensors, md); err != nil {
		return nil, fmt.Errorf("merge: peft: %w", err)
	}
	cj, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("merge: peft: %w", err)
	}
	if err := onnx.WriteFileAtomic(filepath.Join(dir, PEFTConfigFile), append(cj, '\n')); err != nil {
		return nil, fmt.Errorf("merge: peft: %w", err)
	}
	return cfg, nil
}
