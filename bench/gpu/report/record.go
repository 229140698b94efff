package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Record is one measurement, one line of results.jsonl: an engine running one stage of one
// model shape on one device, or the reason it could not.
type Record struct {
	Shape         string  `json:"shape"`             // models/llama preset: tiny, 25m, 1b, 7b
	Engine        string  `json:"engine"`            // "shears" or "pytorch"
	Device        string  `json:"device"`            // cpu, webgpu, cuda
	Stage         string  `json:"stage"`             // "forward" or "train" (one NLS step)
	DType         string  `json:"dtype"`             // fp16 or fp32 weights
	Batch         int     `json:"batch"`             // sequences per run
	Seq           int     `json:"seq"`               // tokens per sequence
	Steps         int     `json:"steps"`             // timed runs
	TokensPerS    float64 `json:"tokens_per_s"`      // steady state (warm-up excluded)
	FLOPsPerToken float64 `json:"flops_per_token"`   // ForwardFLOPs or TrainFLOPs
	PeakMemMiB    float64 `json:"peak_mem_mib"`      // 0: not measured
	MemSource     string  `json:"mem_source"`        // "nvidia-smi" (device, over the idle baseline), "torch" (max allocated)
	Seconds       float64 `json:"seconds"`           // wall time of the whole measurement, model load included
	Error         string  `json:"error,omitempty"`   // why there is no figure
	Skipped       string  `json:"skipped,omitempty"` // not attempted, and why (budget, no torch, ...)
	// Placement: the nodes the provider left to the CPU, for the shape the check profiles.
	Placement *Placement `json:"placement,omitempty"`
}

// OK says the record carries a figure.
func (r Record) OK() bool { return r.Error == "" && r.Skipped == "" && r.TokensPerS > 0 }

// TFLOPS is the achieved rate.
func (r Record) TFLOPS() float64 { return r.TokensPerS * r.FLOPsPerToken / 1e12 }

// Machine describes where the check ran; it is results.json's header.
type Machine struct {
	Date      string  `json:"date"`
	Host      string  `json:"host"`
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	GPU       string  `json:"gpu"` // nvidia-smi's name, or "none"
	GPUMemMiB float64 `json:"gpu_mem_mib"`
	Driver    string  `json:"driver,omitempty"`
	Device    string  `json:"device"`      // the provider shears ran on
	ORT       string  `json:"onnxruntime"` // library version
	Torch     string  `json:"torch,omitempty"`
	Command   string  `json:"command"`
	Note      string  `json:"note,omitempty"` // setup the check supplied (the bundle's Vulkan loader, say)
}

// Results is results.json: the machine, every record, and each record's derived figures.
type Results struct {
	Machine Machine `json:"machine"`
	Rows    []Row   `json:"rows"`
}

// Row is a record with the figures derived from it.
type Row struct {
	Record
	TFLOPS     float64 `json:"tflops"`
	PeakTFLOPS float64 `json:"peak_tflops"`      // the GPU's dense peak for the dtype (0: unknown)
	OfPeak     float64 `json:"fraction_of_peak"` // 0 when the peak is unknown
}

// Build derives the rows: achieved TFLOP/s, and the fraction of the GPU's dense peak for each
// record's weight type.
func Build(m Machine, recs []Record) Results {
	res := Results{Machine: m, Rows: make([]Row, len(recs))}
	for i, r := range recs {
		row := Row{Record: r}
		if r.OK() {
			row.TFLOPS = r.TFLOPS()
			if r.Device != "cpu" {
				row.PeakTFLOPS = Peak(m.GPU, r.DType)
			}
			if row.PeakTFLOPS > 0 {
				row.OfPeak = row.TFLOPS / row.PeakTFLOPS
			}
		}
		res.Rows[i] = row
	}
	return res
}

// ReadRecords reads results.jsonl; a line that is not a record is an error naming it.
func ReadRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r Record
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("report: %s line %d: %v", path, n, err)
		}
		if r.Shape == "" || r.Engine == "" || r.Stage == "" {
			return nil, fmt.Errorf("report: %s line %d: a record needs shape, engine and stage", path, n)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return recs, nil
}

// AppendRecord adds one record to results.jsonl (one write of one line).
func AppendRecord(path string, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("report: %s: %w", path, err)
	}
	return f.Close()
}
