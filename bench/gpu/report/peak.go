package report

import "strings"

// gpuPeak is one GPU's dense (no structured sparsity) peak in TFLOP/s, from the vendor's data
// sheet: FP16 is the tensor-core figure with FP32 accumulation, FP32 the plain (non-tensor) one.
type gpuPeak struct {
	match      string // a substring of the name nvidia-smi reports
	fp16, fp32 float64
}

// peaks is searched in order: more specific names come before the names they contain
// ("GH200" before "H200", "H100 PCIe" before "H100").
var peaks = []gpuPeak{
	{"GH200", 989, 67},
	{"H200", 989, 67},
	{"H100 PCIe", 756, 51},
	{"H100 NVL", 835, 60},
	{"H100", 989, 67}, // SXM ("NVIDIA H100 80GB HBM3")
	{"B200", 2250, 80},
	{"A100", 312, 19.5},
	{"A10G", 70, 31.2},
	{"A10", 125, 31.2},
	{"L40S", 362, 91.6},
	{"L4", 121, 30.3},
	{"V100", 125, 15.7},
	{"T4", 65, 8.1},
	{"RTX 4090", 165, 82.6},
}

// Peak returns the dense peak TFLOP/s of the named GPU for a weight type ("fp16" and "bf16" use
// the tensor-core figure, anything else the FP32 one), or 0 when the GPU is not in the table.
func Peak(gpu, dtype string) float64 {
	for _, p := range peaks {
		if strings.Contains(gpu, p.match) {
			if dtype == "fp16" || dtype == "bf16" {
				return p.fp16
			}
			return p.fp32
		}
	}
	return 0
}
