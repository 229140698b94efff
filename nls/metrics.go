package nls

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/shears-ml/shears/onnx"
)

// StepRecord is one line of metrics.jsonl: one optimizer step.
type StepRecord struct {
	Step         int         `json:"step"`  // 1-based optimizer step of the run
	Epoch        int         `json:"epoch"` // 1-based
	MicroBatches int         `json:"micro_batches"`
	Loss         float64     `json:"loss"` // mean of the micro-batches' (unscaled) losses
	LR           float64     `json:"lr"`
	GradNorm     float64     `json:"grad_norm"` // global norm before clipping
	Tokens       int         `json:"tokens"`    // non-pad tokens of the step's sequences
	LossTokens   int         `json:"loss_tokens"`
	PaddedTokens int         `json:"padded_tokens"` // rows × padded length: the work done
	TokensPerS   float64     `json:"tokens_per_s"`  // Tokens over this step's wall time
	ElapsedS     float64     `json:"elapsed_s"`     // training time since the run began
	Ranks        RankSummary `json:"ranks"`
	// Skipped marks a step whose float16 gradients overflowed under loss scaling: no update,
	// the scale halved. LossScale is the scale after the step (mixed-precision runs only).
	Skipped   bool    `json:"skipped,omitempty"`
	LossScale float64 `json:"loss_scale,omitempty"`
}

// RankSummary summarises the ranks sampled over a step's micro-batches and groups.
type RankSummary struct {
	Mean   float64        `json:"mean"`
	Counts map[string]int `json:"counts"` // rank → (micro-batch, group) draws
}

// SampleRecord is one line of samples.jsonl: one micro-batch and the sub-adapter it trained.
type SampleRecord struct {
	T     int     `json:"t"`    // global micro-batch index, 0-based
	Step  int     `json:"step"` // the optimizer step it belongs to (1-based)
	Loss  float64 `json:"loss"`
	Len   int     `json:"len"`   // padded length (its step graph)
	Ranks []int   `json:"ranks"` // per group, in run.json's groups order
}

func summarise(ranks [][]int) RankSummary {
	s := RankSummary{Counts: map[string]int{}}
	n := 0
	for _, rs := range ranks {
		for _, r := range rs {
			s.Counts[strconv.Itoa(r)]++
			s.Mean += float64(r)
			n++
		}
	}
	if n > 0 {
		s.Mean /= float64(n)
	}
	return s
}

// ReadMetrics reads a run's metrics.jsonl.
func ReadMetrics(dir string) ([]StepRecord, error) {
	return readRecords[StepRecord](filepath.Join(dir, MetricsFile))
}

// ReadSamples reads a run's samples.jsonl.
func ReadSamples(dir string) ([]SampleRecord, error) {
	return readRecords[SampleRecord](filepath.Join(dir, SamplesFile))
}

func readRecords[T any](path string) ([]T, error) {
	var out []T
	err := readJSONL(path, func(b []byte) error {
		var r T
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

func readJSONL(path string, fn func([]byte) error) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("nls: %w", err)
	}
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		if err := fn(l); err != nil {
			return fmt.Errorf("nls: %s line %d: %w", path, i+1, err)
		}
	}
	return nil
}

// truncateJSONL keeps the records of path whose "step" is at most steps, atomically. A last
// line cut short by a kill is dropped; a bad line elsewhere is an error.
func truncateJSONL(path string, steps int) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nls: resume: %w", err)
	}
	lines := bytes.Split(b, []byte("\n"))
	var keep bytes.Buffer
	for i, l := range lines {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var r struct {
			Step *int `json:"step"`
		}
		if err := json.Unmarshal(l, &r); err != nil || r.Step == nil {
			if i == len(lines)-1 {
				continue
			}
			return fmt.Errorf("nls: resume: %s line %d is not a record", path, i+1)
		}
		if *r.Step <= steps {
			keep.Write(l)
			keep.WriteByte('\n')
		}
	}
	return onnx.WriteFileAtomic(path, keep.Bytes())
}

// jsonlWriter appends records to a file.
type jsonlWriter struct {
	f *os.File
	w *bufio.Writer
}

func openJSONL(path string) (*jsonlWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("nls: %w", err)
	}
	return &jsonlWriter{f: f, w: bufio.NewWriter(f)}, nil
}

func (j *jsonlWriter) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("nls: %s: %w", j.f.Name(), err)
	}
	j.w.Write(b)
	return j.w.WriteByte('\n')
}

func (j *jsonlWriter) flush() error {
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("nls: %s: %w", j.f.Name(), err)
	}
	return nil
}

func (j *jsonlWriter) close() error {
	err := j.flush()
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("nls: %s: %w", j.f.Name(), cerr)
	}
	return err
}
