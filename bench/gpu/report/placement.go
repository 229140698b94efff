package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Providers maps a --device name to the execution provider name onnxruntime's profiles use.
var Providers = map[string]string{
	"cpu":      "CPUExecutionProvider",
	"cuda":     "CUDAExecutionProvider",
	"tensorrt": "TensorrtExecutionProvider",
	"webgpu":   "WebGpuExecutionProvider",
}

// Placement says where onnxruntime ran a model's nodes: how many distinct nodes ran on the
// wanted provider, and, by op type, the nodes that ran elsewhere (for a GPU provider, the ops it
// has no kernel for, plus the shape computations onnxruntime keeps on the CPU on purpose).
type Placement struct {
	Provider  string         `json:"provider"`
	OnDevice  int            `json:"nodes_on_device"`
	OffDevice map[string]int `json:"off_device,omitempty"` // op type → nodes
	Error     string         `json:"error,omitempty"`      // why there is no profile
}

// OffOps lists the op types that ran off the device, sorted.
func (p Placement) OffOps() []string {
	ops := make([]string, 0, len(p.OffDevice))
	for op := range p.OffDevice {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

// ReadPlacement reads every onnxruntime profile (*.json, Chrome trace format) in dir and counts
// distinct nodes by the provider that ran them. device is a --device name.
func ReadPlacement(dir, device string) (Placement, error) {
	want, ok := Providers[device]
	if !ok {
		return Placement{}, fmt.Errorf("report: unknown device %q", device)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return Placement{}, err
	}
	if len(files) == 0 {
		return Placement{}, fmt.Errorf("report: no onnxruntime profile (*.json) in %s", dir)
	}
	type node struct{ op, provider string }
	nodes := map[string]node{}
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return Placement{}, fmt.Errorf("report: %w", err)
		}
		var events []struct {
			Cat  string `json:"cat"`
			Name string `json:"name"`
			Args struct {
				OpName   string `json:"op_name"`
				Provider string `json:"provider"`
			} `json:"args"`
		}
		if err := json.Unmarshal(b, &events); err != nil {
			return Placement{}, fmt.Errorf("report: profile %s: %v", f, err)
		}
		for _, e := range events {
			if e.Cat != "Node" || e.Args.OpName == "" || e.Args.Provider == "" {
				continue
			}
			// One node has several events per run (fence_before, kernel_time, fence_after).
			name := e.Name
			for _, suf := range []string{"_kernel_time", "_fence_before", "_fence_after"} {
				name = strings.TrimSuffix(name, suf)
			}
			nodes[fmt.Sprintf("%d/%s", i, name)] = node{e.Args.OpName, e.Args.Provider}
		}
	}
	p := Placement{Provider: want, OffDevice: map[string]int{}}
	for _, n := range nodes {
		if n.provider == want {
			p.OnDevice++
		} else {
			p.OffDevice[n.op]++
		}
	}
	if len(p.OffDevice) == 0 {
		p.OffDevice = nil
	}
	return p, nil
}
