package pipeline

import (
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

// RuntimeConfig selects onnxruntime: the library, the execution provider and the intra-op
// threads (the --ort-lib, --device and --threads flags, a recipe's runtime section).
type RuntimeConfig struct {
	ORTLib  string `yaml:"ort_lib" json:"ort_lib"` // "": $ONNXRUNTIME_LIB, else .ort/
	Device  string `yaml:"device" json:"device"`   // "": DefaultDevice
	Threads int    `yaml:"threads" json:"threads"` // 0: onnxruntime's default
}

// Load loads onnxruntime and returns the session options for the device and thread count.
func (c RuntimeConfig) Load() (RuntimeOptions, error) {
	lib, err := runtime.FindLibrary(c.ORTLib)
	if err != nil {
		return RuntimeOptions{}, err
	}
	if err := runtime.Init(lib); err != nil {
		return RuntimeOptions{}, err
	}
	o := RuntimeOptions{Device: c.Device, Threads: c.Threads}
	return o, o.Validate()
}
