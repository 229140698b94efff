package runtime

import (
	"fmt"
	"strings"
)

// Prepack is the choice of onnxruntime's weight pre-packing for a session: its CPU provider
// may keep a re-laid-out copy of every constant MatMul/Gemm weight (and of MatMulNBits' packed
// blocks) beside the original, made once at session start.
//
// For float weights the copy is as large as the weight, so a session over a multi-GB model
// holds it twice, and packing at start is slow: on the 1B synthetic's NLS train step, packing
// took peak RSS from 6.9 to 10.9 GB and the first step from 5.5 to 34 s, with no speed gained
// on stories260K training and evaluation (bench/RESULTS.md, issue 7 section). So float models
// run without it by default.
//
// onnxruntime's CPU MatMulNBits kernel (the int4/int8 linears shears quantize and SQFT exports
// write), without pre-packing, re-packs its weights on every run: decode steps were 8–14× slower
// than fp32 (bench/RESULTS.md, quant-speed). Its packed copy is the small quantized form. So a
// model that runs MatMulNBits gets pre-packing by default, whichever command opens it.
type Prepack uint8

const (
	// PrepackAuto (the zero value) is on when the model holds a MatMulNBits node (in the
	// main graph or a subgraph, e.g. an If branch of optimum's merged decoder) and off
	// otherwise.
	PrepackAuto Prepack = iota
	// PrepackOn pre-packs whatever the model (shears generate's default: one token per step
	// is a matrix-vector product per weight, about 1.2× faster with float weights too).
	PrepackOn
	// PrepackOff never pre-packs (the caller's memory matters more than MatMulNBits' speed).
	PrepackOff
)

// PrepackChoices are the names ParsePrepack accepts, in Prepack order.
var PrepackChoices = []string{"auto", "on", "off"}

// String is the choice's name: auto, on or off.
func (p Prepack) String() string {
	if int(p) < len(PrepackChoices) {
		return PrepackChoices[p]
	}
	return fmt.Sprintf("Prepack(%d)", uint8(p))
}

// ParsePrepack reads a choice by name: auto ("" too), on (or true) and off (or false), so a
// boolean --prepack=false keeps its meaning.
func ParsePrepack(s string) (Prepack, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return PrepackAuto, nil
	case "on", "true":
		return PrepackOn, nil
	case "off", "false":
		return PrepackOff, nil
	}
	return PrepackAuto, fmt.Errorf("unknown pre-packing choice %q (allowed: %s)", s, strings.Join(PrepackChoices, ", "))
}

// disablePrepacking is onnxruntime's session configuration key that turns pre-packing off.
const disablePrepacking = "session.disable_prepacking"

// resolve is the choice for a model; nbits reports whether it holds MatMulNBits (graphscan.go).
func (p Prepack) resolve(nbits bool) bool {
	switch p {
	case PrepackOn:
		return true
	case PrepackOff:
		return false
	}
	return nbits
}
