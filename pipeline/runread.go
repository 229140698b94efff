package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/lora"
)

// TrainedRun is a run directory loaded back: its configuration and the super-network with the
// trained adapters in place (the evaluators' nls.Run).
type TrainedRun struct {
	nls.Run
	Dir    string
	Config *RunConfig
	// Run.Model is the super-network file named in run.json, as "shears adapt" wrote it (an
	// inference graph with rank-mask inputs, unless adapt --train added dropout inputs), with
	// every module's A and B initializer replaced by the trained values (inline raw data; the
	// frozen base is untouched and keeps its external data): Close it when done. Run.Space is
	// the rank space the run sampled (Config.Hyper.Ranks over the super-network's groups).
	// Steps is the number of optimizer steps in the loaded weights; Final is true when they come
	// from adapter.safetensors (a finished run) and false when from the latest checkpoint.
	Steps int
	Final bool
}

// OpenRun reads a run directory: run.json, then adapter.safetensors (or, for an unfinished
// run, checkpoint.safetensors), and writes the trained A and B into a freshly loaded copy of
// the super-network. It checks that the super-network still matches the run (file size, module
// names and tensor shapes) and that every adapter tensor is present.
func OpenRun(dir string) (*TrainedRun, error) {
	cfg, err := ReadRunConfig(dir)
	if err != nil {
		return nil, err
	}
	path, final := filepath.Join(dir, AdapterFile), true
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		path, final = filepath.Join(dir, CheckpointFile), false
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("load run %s: neither %s nor %s (the run has not reached a checkpoint)", dir, AdapterFile, CheckpointFile)
		}
	}
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", dir, err)
	}
	steps, err := strconv.Atoi(f.Metadata["steps"])
	if err != nil {
		return nil, fmt.Errorf("load run %s: %s has no step counter", dir, path)
	}
	if err := checkModelInputs(cfg.Inputs); err != nil {
		return nil, fmt.Errorf("load run %s: %w", dir, err)
	}
	if fi, err := os.Stat(cfg.Super); err != nil {
		return nil, fmt.Errorf("load run %s: super-network: %w", dir, err)
	} else if fi.Size() != cfg.SuperSize {
		return nil, fmt.Errorf("load run %s: %s has %d bytes, the run trained on %d (changed since?)", dir, cfg.Super, fi.Size(), cfg.SuperSize)
	}
	m, err := onnx.Load(cfg.Super)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	meta, err := lora.ReadConfig(m)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", dir, err)
	}
	space, err := meta.Space(cfg.Hyper.Ranks)
	if err != nil {
		return nil, fmt.Errorf("load run %s: %w", dir, err)
	}
	if !slices.Equal(space.Groups, cfg.Groups) {
		return nil, fmt.Errorf("load run %s: the super-network's groups differ from the run's", dir)
	}
	for _, mod := range meta.Modules {
		for _, name := range []string{mod.A, mod.B} {
			t := m.Initializer(name)
			if t == nil {
				return nil, fmt.Errorf("load run %s: the super-network has no initializer %q", dir, name)
			}
			st, ok := f.Get(name)
			if !ok {
				return nil, fmt.Errorf("load run %s: %s lacks tensor %q", dir, path, name)
			}
			if !slices.Equal(st.Shape, onnx.Dims(t)) {
				return nil, fmt.Errorf("load run %s: tensor %q is %v in %s, %v in the super-network", dir, name, st.Shape, path, onnx.Dims(t))
			}
			v, err := st.Float32s()
			if err != nil {
				return nil, fmt.Errorf("load run %s: %w", dir, err)
			}
			if err := onnx.SetFloat32s(t, v); err != nil {
				return nil, fmt.Errorf("load run %s: %w", dir, err)
			}
		}
	}
	ok = true
	return &TrainedRun{Run: nls.Run{Model: m, Meta: meta, Space: space}, Dir: dir, Config: cfg, Steps: steps, Final: final}, nil
}
