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
	addPrepack(fs, &r.cfg.Prepack)
}

// addPrepack registers --prepack on p, whose value when called is the default (auto when "").
// --prepack alone means on, and --prepack=false off, as when it was a boolean.
func addPrepack(fs *pflag.FlagSet, p *string) {
	f := fs.VarPF(prepackFlag{p}, "prepack", "", "onnxruntime weight pre-packing: "+pipeline.PrepackChoices()+
		"; auto pre-packs models with MatMulNBits (int4/int8) linears, which re-pack their weights on every run without it, "+
		"and not float models, whose packed copy doubles the weight memory")
	f.NoOptDefVal = "on"
}

// prepackFlag is a --prepack value: auto, on or off (true and false are read as on and off).
type prepackFlag struct{ v *string }

func (f prepackFlag) String() string {
	if f.v == nil || *f.v == "" {
		return "auto"
	}
	return *f.v
}

func (f prepackFlag) Set(s string) error {
	p, err := pipeline.ParsePrepack(s)
	if err != nil {
		return err
	}
	*f.v = p.String()
	return nil
}

func (f prepackFlag) Type() string { return "auto|on|off" }

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
