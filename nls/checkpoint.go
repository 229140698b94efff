package nls

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/transform/lora"
)

// Formats recorded in the safetensors metadata.
const (
	checkpointFormat = "shears-nls-checkpoint"
	adapterFormat    = "shears-lora-adapter"
)

// Names of the AdamW moments of a parameter inside a checkpoint.
func momentNames(p string) (m, v string) { return "adam_m/" + p, "adam_v/" + p }

// checkpoint is the resumable state: parameters, moments and counters. The data order, the
// ranks and the dropout masks are functions of (seed, position), so nothing else is needed.
type checkpoint struct {
	Steps   int           // optimizer steps done
	Elapsed time.Duration // training time before this point
	Tokens  int64         // non-pad tokens processed
}

func (e *engine) saveCheckpoint(path string, c checkpoint) error {
	var ts []safetensors.Tensor
	for _, p := range e.params {
		mn, vn := momentNames(p.name)
		ts = append(ts, safetensors.F32(p.name, p.dims, p.value), safetensors.F32(mn, p.dims, p.m), safetensors.F32(vn, p.dims, p.v))
	}
	meta := map[string]string{
		"format":    checkpointFormat,
		"steps":     strconv.Itoa(c.Steps),
		"elapsed_s": strconv.FormatFloat(c.Elapsed.Seconds(), 'f', -1, 64),
		"tokens":    strconv.FormatInt(c.Tokens, 10),
	}
	if e.scaling {
		// The loss scaler's state, so that a resumed mixed-precision run scales as it would have.
		meta["loss_scale"] = strconv.FormatFloat(e.scaler.Scale, 'g', -1, 64)
		meta["loss_scale_good"] = strconv.Itoa(e.scaler.Good)
		meta["skipped_steps"] = strconv.Itoa(e.skipped)
	}
	return safetensors.Write(path, ts, meta)
}

func (e *engine) loadCheckpoint(path string) (checkpoint, error) {
	var c checkpoint
	f, err := safetensors.Read(path)
	if err != nil {
		return c, fmt.Errorf("nls: resume: %w", err)
	}
	if f.Metadata["format"] != checkpointFormat {
		return c, fmt.Errorf("nls: resume: %s is not a shears training checkpoint (format %q)", path, f.Metadata["format"])
	}
	if c.Steps, err = strconv.Atoi(f.Metadata["steps"]); err != nil || c.Steps < 0 {
		return c, fmt.Errorf("nls: resume: %s: bad step counter %q", path, f.Metadata["steps"])
	}
	sec, err := strconv.ParseFloat(f.Metadata["elapsed_s"], 64)
	if err != nil {
		return c, fmt.Errorf("nls: resume: %s: bad elapsed time %q", path, f.Metadata["elapsed_s"])
	}
	c.Elapsed = time.Duration(sec * float64(time.Second))
	if c.Tokens, err = strconv.ParseInt(f.Metadata["tokens"], 10, 64); err != nil {
		return c, fmt.Errorf("nls: resume: %s: bad token counter %q", path, f.Metadata["tokens"])
	}
	if v, ok := f.Metadata["loss_scale"]; ok {
		sc, err1 := strconv.ParseFloat(v, 64)
		good, err2 := strconv.Atoi(f.Metadata["loss_scale_good"])
		skipped, err3 := strconv.Atoi(f.Metadata["skipped_steps"])
		if err1 != nil || err2 != nil || err3 != nil || !(sc > 0) || good < 0 || skipped < 0 {
			return c, fmt.Errorf("nls: resume: %s: bad loss-scaler state %q, %q, %q", path, v, f.Metadata["loss_scale_good"], f.Metadata["skipped_steps"])
		}
		e.scaler.Scale, e.scaler.Good, e.skipped = sc, good, skipped
	}
	for _, p := range e.params {
		mn, vn := momentNames(p.name)
		for _, x := range []struct {
			name string
			dst  []float32
		}{{p.name, p.value}, {mn, p.m}, {vn, p.v}} {
			v, err := f.Float32s(x.name)
			if err != nil {
				return c, fmt.Errorf("nls: resume: %s: %w", path, err)
			}
			if len(v) != len(x.dst) {
				return c, fmt.Errorf("nls: resume: %s: tensor %q has %d values, the super-network's has %d", path, x.name, len(v), len(x.dst))
			}
			copy(x.dst, v)
		}
		p.version++
	}
	return c, nil
}

// saveAdapter writes the trained A and B (full r_max, ONNX layout, initializer names) with the
// lora metadata, so the adapter is self-describing.
func (e *engine) saveAdapter(path string, steps int) error {
	mj, err := json.Marshal(e.meta)
	if err != nil {
		return fmt.Errorf("nls: adapter: %w", err)
	}
	var ts []safetensors.Tensor
	for _, p := range e.params {
		ts = append(ts, safetensors.F32(p.name, p.dims, p.value))
	}
	return safetensors.Write(path, ts, map[string]string{
		"format": adapterFormat, "steps": strconv.Itoa(steps), lora.MetaKey: string(mj), "layout": lora.Layout,
	})
}
