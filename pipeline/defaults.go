package pipeline

// The defaults every entry point shares — the CLI's flag defaults, a recipe's omitted fields,
// a library caller's zero values — named once so the three cannot drift apart.
const (
	DefaultPattern      = "unstructured" // prune: no N:M structure
	DefaultCalibSamples = 128            // calibration windows (Wanda, GPTQ), as the reference
	DefaultCalibSeqLen  = 2048           // tokens per calibration window, capped to the context
	DefaultEvalSeqLen   = 2048           // perplexity window, capped to the context

	QuantRTN         = "rtn"  // quantize: round to nearest, no data
	QuantGPTQ        = "gptq" // quantize: calibrated error compensation
	DefaultBits      = 4
	DefaultBlockSize = 32
	DefaultDamp      = 0.01 // GPTQ: fraction of the Hessian's mean diagonal added to it
)
