package nls

// The stories260K fixtures of this package's tests, for its external tests (package nls_test:
// training runs through pipeline.Train, which imports nls).
var (
	SuperNet  = superNet
	Subset    = subset
	TokPath   = tokPath
	Window    = window
	Examples  = examples
	TestRanks = testRanks
)

const TestAlpha = testAlpha
