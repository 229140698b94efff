package pipeline

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/shears-ml/shears/onnx"
)

// CheckOutputs refuses, before any work, an output that is one of the command's inputs (issue
// 14: "prune m.onnx -o m.onnx.data" used to overwrite the model's own weights, "export RUN -o
// SUPER.onnx" the run's super-network) and an output folder that cannot be written (found
// before a long calibration, not after). outs are the files the command will write (a model
// and its data file); ins the files it reads (onnx.Model.Files, run files), each with what it
// is. Files are compared by identity (os.SameFile), so links and other spellings of a path
// are caught too.
func CheckOutputs(outs []string, ins map[string]string) error {
	for _, o := range outs {
		if o == "" {
			continue
		}
		if ofi, err := os.Stat(o); err == nil {
			for in, what := range ins {
				if ifi, err := os.Stat(in); err == nil && os.SameFile(ofi, ifi) {
					return fmt.Errorf("output %s is %s (%s), which this command reads: write to another file", o, what, in)
				}
			}
		}
	}
	for _, o := range outs {
		if o == "" {
			continue
		}
		p, err := onnx.CreatePending(o)
		if err != nil {
			return fmt.Errorf("output %s: cannot write in its folder: %w", o, err)
		}
		p.Abort()
	}
	return nil
}

// modelOutputs are the files a model save to path writes: the model and its default data file.
func modelOutputs(path string) []string {
	return []string{path, filepath.Join(filepath.Dir(path), filepath.Base(path)+".data")}
}

// modelInputs names m's files for CheckOutputs: the model itself and its data files.
func modelInputs(m *onnx.Model, what string, into map[string]string) map[string]string {
	if into == nil {
		into = map[string]string{}
	}
	for i, f := range m.Files() {
		if i == 0 && m.Path != "" {
			into[f] = what
		} else if _, ok := into[f]; !ok {
			into[f] = what + "'s external data"
		}
	}
	return into
}

// CheckModelOutput is CheckOutputs for a command that reads model m and writes a model to out.
func CheckModelOutput(out string, m *onnx.Model, what string) error {
	return CheckOutputs(modelOutputs(out), modelInputs(m, what, nil))
}
