package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"

	"github.com/shears-ml/shears/onnx"
)

// ErrRunExists is returned when a training's run directory already holds a run and Resume is
// not set.
var ErrRunExists = errors.New("the run directory already holds a run (resume it or choose another)")

// Files of a run directory (Train writes it; OpenRun, Search and Export read it):
// run.json (RunConfig), metrics.jsonl (one nls.StepRecord per optimizer step), samples.jsonl
// (one nls.SampleRecord per micro-batch), checkpoint.safetensors (atomic; A, B, AdamW m and v
// and the counters), adapter.safetensors (the final A and B at full r_max, ONNX layout, under
// their initializer names, the lora metadata alongside) and loss.png (the training curve).
const (
	RunFile        = "run.json"
	MetricsFile    = "metrics.jsonl"
	SamplesFile    = "samples.jsonl"
	CheckpointFile = "checkpoint.safetensors"
	AdapterFile    = "adapter.safetensors"
	PlotFile       = "loss.png"
)

// RunVersion is the version of run.json this build writes and reads.
const RunVersion = 1

// RunConfig is run.json: everything needed to understand, resume or reload a run.
type RunConfig struct {
	Version int    `json:"version"`
	Shears  string `json:"shears_version"`
	// Inputs, as absolute paths.
	Super     string `json:"super"`
	SuperSize int64  `json:"super_size"`
	Data      string `json:"data"`
	Tokenizer string `json:"tokenizer"`
	// Inputs are the content digests of every file the run reads (the super-network, its data
	// files and the base data it shares, the training data, the tokenizer): --resume, search and
	// export refuse a run whose inputs changed underneath, naming the file. Empty in runs
	// written before digests were recorded.
	Inputs []InputDigest `json:"inputs,omitempty"`
	// CheckpointEvery is the run's --checkpoint-every, kept so a resumed run checkpoints as
	// often as it did (issue 14: it used to fall back to epoch ends only).
	CheckpointEvery int `json:"checkpoint_every,omitempty"`

	Hyper Hyper `json:"hyper"`

	// The adapter space (from the super-network's lora metadata).
	RankSpace []int    `json:"rank_space"`
	RMax      int      `json:"r_max"`
	Alpha     float64  `json:"alpha"`
	Scale     float64  `json:"scale"`
	Dropout   float64  `json:"dropout"`
	Groups    []string `json:"groups"`
	Modules   int      `json:"modules"`
	Params    int64    `json:"params"` // trainable values (A and B at r_max)

	// The layout of the run.
	Sequences     int   `json:"sequences"`
	MicroPerEpoch int   `json:"micro_batches_per_epoch"`
	StepsPerEpoch int   `json:"steps_per_epoch"`
	TotalMicro    int   `json:"total_micro_batches"`
	TotalSteps    int   `json:"total_steps"`
	Buckets       []int `json:"buckets"`
	PaddedTokens  int64 `json:"padded_tokens"` // rows × length over the run's micro-batches
	RealTokens    int64 `json:"real_tokens"`   // non-pad tokens over the run

	Schedule   string   `json:"schedule"`
	Deviations []string `json:"deviations,omitempty"`
	// Informational only (not compared on resume).
	Device  string `json:"device"`
	Threads int    `json:"threads"`
}

// Hyper are the settings that change the numbers; a resume must match them exactly.
type Hyper struct {
	Epochs        int     `json:"epochs"`
	LR            float64 `json:"lr"`
	Batch         int     `json:"batch"`
	MicroBatch    int     `json:"micro_batch"`
	Accumulation  int     `json:"accumulation"`
	Cutoff        int     `json:"cutoff"`
	TrainOnInputs bool    `json:"train_on_inputs"`
	Seed          uint64  `json:"seed"`
	Warmup        int     `json:"warmup"`
	WeightDecay   float64 `json:"weight_decay"`
	MaxGradNorm   float64 `json:"max_grad_norm"`
	Ranks         []int   `json:"ranks"` // sampled ranks
	Bucket        int     `json:"bucket"`
	MaxGraphs     int     `json:"max_graphs"`
	Beta1         float64 `json:"adam_beta1"`
	Beta2         float64 `json:"adam_beta2"`
	Eps           float64 `json:"adam_eps"`
}

// buildVersion is the shears module version and VCS revision of this binary, when known.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "+dirty"
		}
	}
	return v
}

// ReadRunConfig reads dir/run.json.
func ReadRunConfig(dir string) (*RunConfig, error) {
	p := filepath.Join(dir, RunFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read run: %w", err)
	}
	var c RunConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("read run %s: %w", p, err)
	}
	if c.Version != RunVersion {
		return nil, fmt.Errorf("read run %s: version %d, this build reads %d", p, c.Version, RunVersion)
	}
	return &c, nil
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return onnx.WriteFileAtomic(path, append(b, '\n'))
}

// diffRun lists what differs between a stored run and a new one, in the fields that change
// the numbers.
func diffRun(old, cur *RunConfig) []string {
	var d []string
	cmp := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			d = append(d, fmt.Sprintf("%s: run.json has %v, now %v", name, a, b))
		}
	}
	cmp("super", old.Super, cur.Super)
	cmp("super size", old.SuperSize, cur.SuperSize)
	cmp("data", old.Data, cur.Data)
	cmp("tokenizer", old.Tokenizer, cur.Tokenizer)
	ov, cv := reflect.ValueOf(old.Hyper), reflect.ValueOf(cur.Hyper)
	for i := 0; i < ov.NumField(); i++ {
		tag := strings.Split(ov.Type().Field(i).Tag.Get("json"), ",")[0]
		cmp(tag, ov.Field(i).Interface(), cv.Field(i).Interface())
	}
	cmp("groups", old.Groups, cur.Groups)
	cmp("sequences", old.Sequences, cur.Sequences)
	cmp("buckets", old.Buckets, cur.Buckets)
	return d
}
