package pipeline

import (
	"fmt"
	"strings"

	"github.com/shears-ml/shears/runtime"
)

// RuntimeOptions are the onnxruntime session options a stage runs its model with (device,
// threads, pre-packing); Runtime makes them. A stage's Options carry them as they are, so the
// CLI and the recipe runner describe a session the same way.
type RuntimeOptions = runtime.Options

// DefaultDevice is the execution provider used when none is named.
const DefaultDevice = "cpu"

// DeviceList names the execution providers Runtime accepts, as help text ("cpu, cuda, tensorrt
// or webgpu").
func DeviceList() string {
	d := runtime.Devices
	if len(d) < 2 {
		return strings.Join(d, "")
	}
	return strings.Join(d[:len(d)-1], ", ") + " or " + d[len(d)-1]
}

// RuntimeConfig selects onnxruntime: the library, the execution provider, the intra-op
// threads and weight pre-packing (the --ort-lib, --device, --threads and --prepack flags, a
// recipe's runtime section).
type RuntimeConfig struct {
	ORTLib  string `yaml:"ort_lib" json:"ort_lib"` // "": $ONNXRUNTIME_LIB, else .ort/
	Device  string `yaml:"device" json:"device"`   // "": DefaultDevice
	Threads int    `yaml:"threads" json:"threads"` // 0: onnxruntime's default
	// Prepack is auto (""), on or off: see runtime.Prepack (auto pre-packs models with
	// MatMulNBits linears only).
	Prepack string `yaml:"prepack" json:"prepack,omitempty"`
}

// PrepackChoices names the values of RuntimeConfig.Prepack, as help text ("auto, on or off").
func PrepackChoices() string {
	c := runtime.PrepackChoices
	return strings.Join(c[:len(c)-1], ", ") + " or " + c[len(c)-1]
}

// ParsePrepack reads a RuntimeConfig.Prepack value (auto, on, off; true and false too).
func ParsePrepack(s string) (runtime.Prepack, error) { return runtime.ParsePrepack(s) }

// Load loads onnxruntime and returns the session options for the device, thread count and
// pre-packing choice.
func (c RuntimeConfig) Load() (RuntimeOptions, error) {
	lib, err := runtime.FindLibrary(c.ORTLib)
	if err != nil {
		return RuntimeOptions{}, err
	}
	if err := runtime.Init(lib); err != nil {
		return RuntimeOptions{}, err
	}
	p, err := runtime.ParsePrepack(c.Prepack)
	if err != nil {
		return RuntimeOptions{}, fmt.Errorf("runtime: prepack: %w", err)
	}
	o := RuntimeOptions{Device: c.Device, Threads: c.Threads, Prepack: p}
	return o, o.Validate()
}
