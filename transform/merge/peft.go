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

// WritePEFT writes the sub-adapter at ranks as a PEFT LoRA adapter in dir (created if needed):
// adapter_model.safetensors holds, per module, base_model.model.<module>.lora_A.weight
// [r, in] = A[:, :r]ᵀ and lora_B.weight [out, r] = B[:r, :]ᵀ (PyTorch layout), float32.
// PEFT scales by lora_alpha / r, so each module gets r = its active rank and lora_alpha =
// scale · r, which keeps the trained scale alpha / r_max (METHOD §2: a stock loader reading
// r = 24 with alpha 64 would scale by 2.67 instead of 2). The most common rank is the config's
// r; modules with other ranks go to rank_pattern and alpha_pattern under their full names.
// Module names are the super-network's (Hugging Face names when the model has them). The
// Shears metadata (scale, ranks, r_max, sparse_adapter) is in the safetensors __metadata__. A
// SparseAdapter network's delta is masked by the base's zeros, which stock PEFT does not do:
// merge with --merge sparse to reproduce it.
func WritePEFT(dir string, super *onnx.Model, ranks map[string]int, baseModel string) (*PEFTConfig, error) {
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
		key := PEFTKeyPrefix + mod.Name
		tensors = append(tensors,
			safetensors.F32(key+".lora_A.weight", []int64{r, mod.In}, at),
			safetensors.F32(key+".lora_B.weight", []int64{mod.Out, r}, bt))
		count[int(r)]++
		rankOf[mod.Name] = int(r)
		targets[mod.Name[strings.LastIndex(mod.Name, ".")+1:]] = true // PEFT matches name suffixes
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
