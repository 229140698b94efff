package pipeline

import "github.com/shears-ml/shears/runtime"

// Runtime loads onnxruntime (the --ort-lib path, else $ONNXRUNTIME_LIB, else .ort/) and
// returns the session options for the device and thread count.
func Runtime(ortLib, device string, threads int) (runtime.Options, error) {
	lib, err := runtime.FindLibrary(ortLib)
	if err != nil {
		return runtime.Options{}, err
	}
	if err := runtime.Init(lib); err != nil {
		return runtime.Options{}, err
	}
	o := runtime.Options{Device: device, Threads: threads}
	return o, o.Validate()
}
