package hf

// Decode is decode for the external test package (package hf_test, where the tests live because
// internal/testkit imports this package): the float64 reference forward reads checkpoints with it.
var Decode = decode
