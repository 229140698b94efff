package main

import (
	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

// targetFlags choose the linears a weight stage (prune, quantize) works on.
type targetFlags struct {
	include, exclude string
}

func (t *targetFlags) add(fs *pflag.FlagSet, verb string) {
	fs.StringVar(&t.include, "include", "", "regexp: "+verb+" only linears whose node, weight or role matches")
	fs.StringVar(&t.exclude, "exclude", "", "regexp: skip linears whose node, weight or role matches")
}

// calibFlags are the calibration flags of the stages that run the model on data before
// changing its weights: prune (Wanda's norms) and quantize (GPTQ's Hessians).
type calibFlags struct {
	calib, tokenizer string
	samples, seqLen  int
	seed             uint64
}

func (c *calibFlags) add(fs *pflag.FlagSet, method string) {
	fs.StringVar(&c.calib, "calib", "", "calibration data for "+method+" (.txt, .json, .jsonl)")
	fs.StringVar(&c.tokenizer, "tokenizer", "", "tokenizer for the calibration text (not needed for pre-tokenized {\"ids\"} .jsonl)")
	fs.IntVar(&c.samples, "samples", pipeline.DefaultCalibSamples, method+" calibration windows")
	fs.IntVar(&c.seqLen, "seq-len", pipeline.DefaultCalibSeqLen, "tokens per calibration window (capped to the model's context)")
	fs.Uint64Var(&c.seed, "seed", 0, "calibration sampling seed")
}

// calibrating starts a weight stage: its options are checked first (checkErr: usage errors
// before onnxruntime is looked for); then, when the stage calibrates (on), onnxruntime is
// loaded into ro and progress gets the bar that draws the calibration stage by stage. The
// returned stop ends the bar (safe to call twice, and a no-op when off).
func calibrating(env *cliEnv, rt *runtimeFlags, checkErr error, on bool, ro *pipeline.RuntimeOptions, progress *pipeline.ProgressFunc) (stop func(), err error) {
	if checkErr != nil {
		return nil, checkErr
	}
	if !on {
		return func() {}, nil
	}
	if *ro, err = rt.options(); err != nil {
		return nil, err
	}
	bar := env.progressBar(true)
	*progress = bar.fn()
	return bar.done, nil
}
