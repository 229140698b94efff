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

// Runtime loads onnxruntime (the --ort-lib path, else $ONNXRUNTIME_LIB, else .ort/) and
// returns the session options for the device and thread count.
func Runtime(ortLib, device string, threads int) (RuntimeOptions, error) {
	lib, err := runtime.FindLibrary(ortLib)
	if err != nil {
		return RuntimeOptions{}, err
	}
	if err := runtime.Init(lib); err != nil {
		return RuntimeOptions{}, err
	}
	o := RuntimeOptions{Device: device, Threads: threads}
	return o, o.Validate()
}
