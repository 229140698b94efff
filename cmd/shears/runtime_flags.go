package main

import (
	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

// runtimeFlags are the onnxruntime flags shared by every command that runs a model.
type runtimeFlags struct{ cfg pipeline.RuntimeConfig }

func (r *runtimeFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&r.cfg.ORTLib, "ort-lib", "", "path to libonnxruntime (default: $ONNXRUNTIME_LIB, then .ort/)")
	fs.StringVar(&r.cfg.Device, "device", pipeline.DefaultDevice, "execution provider: "+pipeline.DeviceList())
	fs.IntVar(&r.cfg.Threads, "threads", 0, "intra-op threads (0 = onnxruntime's default)")
}

// options loads the library and returns the session options the flags describe.
func (r *runtimeFlags) options() (pipeline.RuntimeOptions, error) {
	return r.cfg.Load()
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
