// Package onnxpb holds the Go bindings generated from onnx.proto (ONNX 1.12, IR 8, plus the
// IR >= 9 tensor data types). The proto package is renamed to shears.onnx so that these bindings
// can be linked next to any other ONNX binding without a registration conflict; the wire format is
// unchanged because ONNX uses no Any fields.
//
// Regenerate with `go generate ./onnx/onnxpb` (needs protoc and protoc-gen-go v1.36.12).
package onnxpb

//go:generate protoc -I ../proto --go_out=. --go_opt=paths=source_relative --go_opt=Monnx.proto=github.com/shears-ml/shears/onnx/onnxpb ../proto/onnx.proto
