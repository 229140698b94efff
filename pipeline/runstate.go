package pipeline

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/transform/lora"
)

// Formats recorded in the safetensors metadata of a run's checkpoint and adapter.
const (
	checkpointFormat = "shears-nls-checkpoint"
	adapterFormat    = "shears-lora-adapter"
)

// Names of the AdamW moments of a parameter inside a checkpoint.
func momentNames(p string) (m, v string) { return "adam_m/" + p, "adam_v/" + p }

// runStore is a run directory as the training loop's nls.Store: records appended to
// metrics.jsonl and samples.jsonl, checkpoints written atomically after the records they cover.
type runStore struct {
	dir              string
	metrics, samples *jsonlWriter
}

func openRunStore(dir string) (*runStore, error) {
	metrics, err := openJSONL(filepath.Join(dir, MetricsFile))
	if err != nil {
		return nil, err
	}
	samples, err := openJSONL(filepath.Join(dir, SamplesFile))
	if err != nil {
		metrics.close()
		return nil, err
	}
	return &runStore{dir: dir, metrics: metrics, samples: samples}, nil
}

func (r *runStore) Sample(s nls.SampleRecord) error { return r.samples.write(s) }
func (r *runStore) Step(s nls.StepRecord) error     { return r.metrics.write(s) }

// Checkpoint flushes the records, then writes checkpoint.safetensors atomically.
func (r *runStore) Checkpoint(s nls.State) error {
	if err := r.metrics.flush(); err != nil {
		return err
	}
	if err := r.samples.flush(); err != nil {
		return err
	}
	return writeCheckpoint(filepath.Join(r.dir, CheckpointFile), s)
}

func (r *runStore) close() error {
	err := r.metrics.close()
	if serr := r.samples.close(); err == nil {
		err = serr
	}
	return err
}

// writeCheckpoint writes s: every parameter with its moments, the counters and the loss
// scaler's state in the metadata.
func writeCheckpoint(path string, s nls.State) error {
	var ts []safetensors.Tensor
	for _, p := range s.Params {
		mn, vn := momentNames(p.Name)
		ts = append(ts, safetensors.F32(p.Name, p.Dims, p.Value), safetensors.F32(mn, p.Dims, p.M), safetensors.F32(vn, p.Dims, p.V))
	}
	meta := map[string]string{
		"format":    checkpointFormat,
		"steps":     strconv.Itoa(s.Steps),
		"elapsed_s": strconv.FormatFloat(s.Elapsed.Seconds(), 'f', -1, 64),
		"tokens":    strconv.FormatInt(s.Tokens, 10),
	}
	if s.Scaling {
		// The loss scaler's state, so that a resumed mixed-precision run scales as it would have.
		meta["loss_scale"] = strconv.FormatFloat(s.LossScale, 'g', -1, 64)
		meta["loss_scale_good"] = strconv.Itoa(s.ScaleGood)
		meta["skipped_steps"] = strconv.Itoa(s.Skipped)
	}
	return safetensors.Write(path, ts, meta)
}

// readCheckpoint reads a checkpoint back as an nls.State (tensors by name; the trainer checks
// that each is there with its size).
func readCheckpoint(path string) (nls.State, error) {
	var s nls.State
	f, err := safetensors.Read(path)
	if err != nil {
		return s, fmt.Errorf("resume: %w", err)
	}
	md := f.Metadata
	if md["format"] != checkpointFormat {
		return s, fmt.Errorf("resume: %s is not a shears training checkpoint (format %q)", path, md["format"])
	}
	if s.Steps, err = strconv.Atoi(md["steps"]); err != nil || s.Steps < 0 {
		return s, fmt.Errorf("resume: %s: bad step counter %q", path, md["steps"])
	}
	sec, err := strconv.ParseFloat(md["elapsed_s"], 64)
	if err != nil {
		return s, fmt.Errorf("resume: %s: bad elapsed time %q", path, md["elapsed_s"])
	}
	s.Elapsed = time.Duration(sec * float64(time.Second))
	if s.Tokens, err = strconv.ParseInt(md["tokens"], 10, 64); err != nil {
		return s, fmt.Errorf("resume: %s: bad token counter %q", path, md["tokens"])
	}
	if v, ok := md["loss_scale"]; ok {
		sc, err1 := strconv.ParseFloat(v, 64)
		good, err2 := strconv.Atoi(md["loss_scale_good"])
		skipped, err3 := strconv.Atoi(md["skipped_steps"])
		if err1 != nil || err2 != nil || err3 != nil {
			return s, fmt.Errorf("resume: %s: bad loss-scaler state %q, %q, %q", path, v, md["loss_scale_good"], md["skipped_steps"])
		}
		s.Scaling, s.LossScale, s.ScaleGood, s.Skipped = true, sc, good, skipped
	}
	for _, t := range f.Tensors {
		if isMoment(t.Name) {
			continue
		}
		p := nls.Param{Name: t.Name, Dims: t.Shape}
		mn, vn := momentNames(t.Name)
		for _, x := range []struct {
			name string
			dst  *[]float32
		}{{t.Name, &p.Value}, {mn, &p.M}, {vn, &p.V}} {
			if *x.dst, err = f.Float32s(x.name); err != nil {
				return s, fmt.Errorf("resume: %s: %w", path, err)
			}
		}
		s.Params = append(s.Params, p)
	}
	return s, nil
}

// isMoment reports whether a checkpoint tensor is an AdamW moment (not a parameter).
func isMoment(name string) bool {
	return strings.HasPrefix(name, "adam_m/") || strings.HasPrefix(name, "adam_v/")
}

// writeAdapter writes the trained A and B (full r_max, ONNX layout, initializer names) with the
// lora metadata, so the adapter is self-describing.
func writeAdapter(path string, params []nls.Param, meta *lora.Meta, steps int) error {
	mj, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	var ts []safetensors.Tensor
	for _, p := range params {
		ts = append(ts, safetensors.F32(p.Name, p.Dims, p.Value))
	}
	return safetensors.Write(path, ts, map[string]string{
		"format": adapterFormat, "steps": strconv.Itoa(steps), lora.MetaKey: string(mj), "layout": lora.Layout,
	})
}
