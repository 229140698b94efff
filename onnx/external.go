package onnx

// externalFiles is replaced by the external-data implementation.
type externalFiles struct{}
