package main

import (
	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

// runtimeFlags are the onnxruntime flags shared by every command that runs a model.
type runtimeFlags struct {
	ortLib  string
	device  string
	threads int
}

func (r *runtimeFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&r.ortLib, "ort-lib", "", "path to libonnxruntime (default: $ONNXRUNTIME_LIB, then .ort/)")
	fs.StringVar(&r.device, "device", pipeline.DefaultDevice, "execution provider: "+pipeline.DeviceList())
	fs.IntVar(&r.threads, "threads", 0, "intra-op threads (0 = onnxruntime's default)")
}

// options loads the library and returns the session options the flags describe.
func (r *runtimeFlags) options() (pipeline.RuntimeOptions, error) {
	return pipeline.Runtime(r.ortLib, r.device, r.threads)
}

// load is how a command that runs a model starts: its stage's options are checked first
// (checkErr: usage errors come before onnxruntime is looked for), then the library is loaded
// and the session options the flags describe go to ro (nil: a stage that only needs the
// library loaded).
func (r *runtimeFlags) load(checkErr error, ro *pipeline.RuntimeOptions) error {
	if checkErr != nil {
		return checkErr
	}
	o, err := r.options()
	if err == nil && ro != nil {
		*ro = o
	}
	return err
}
