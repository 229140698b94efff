package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/onnx"
)

// ReadMetrics reads a run's metrics.jsonl.
func ReadMetrics(dir string) ([]nls.StepRecord, error) {
	return readRecords[nls.StepRecord](filepath.Join(dir, MetricsFile))
}

// ReadSamples reads a run's samples.jsonl.
func ReadSamples(dir string) ([]nls.SampleRecord, error) {
	return readRecords[nls.SampleRecord](filepath.Join(dir, SamplesFile))
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
		return fmt.Errorf("%w", err)
	}
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		if err := fn(l); err != nil {
			return fmt.Errorf("%s line %d: %w", path, i+1, err)
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
		return fmt.Errorf("resume: %w", err)
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
			return fmt.Errorf("resume: %s line %d is not a record", path, i+1)
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
		return nil, fmt.Errorf("%w", err)
	}
	return &jsonlWriter{f: f, w: bufio.NewWriter(f)}, nil
}

func (j *jsonlWriter) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", j.f.Name(), err)
	}
	j.w.Write(b)
	return j.w.WriteByte('\n')
}

func (j *jsonlWriter) flush() error {
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("%s: %w", j.f.Name(), err)
	}
	return nil
}

func (j *jsonlWriter) close() error {
	err := j.flush()
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%s: %w", j.f.Name(), cerr)
	}
	return err
}
