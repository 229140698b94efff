package onnx

import (
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Model is a loaded ONNX model: the protobuf plus the folder its external-data locations are
// relative to. Tensors with external data keep data_location = EXTERNAL until written.
type Model struct {
	Proto *onnxpb.ModelProto
	// Dir is the folder external-data locations resolve against ("" when the model has none).
	Dir string
	// Path is the file the model was loaded from ("" for a model built in memory).
	Path string

	ext *externalFiles // lazily opened external-data files (nil until first use)
}

// SaveOptions controls how Save lays out tensor data.
type SaveOptions struct {
	// ExternalData writes tensors of at least ExternalThreshold bytes to one data file next to
	// the model. Save externalises regardless when the total tensor bytes pass MaxInlineBytes.
	ExternalData bool
	// DataFile is the data file's name, relative to the model's folder. Default: "<model file>.data".
	DataFile string
	// ExternalThreshold is the smallest tensor (bytes) written externally. Default 1024.
	ExternalThreshold int64
	// Transform, when set, is applied to every initializer's raw little-endian bytes as it is
	// written (the weights stream through it, one tensor at a time). It returns the bytes to write,
	// which must have the same length. Used by passes that rewrite weights of large models.
	Transform func(name string, t *onnxpb.TensorProto, raw []byte) ([]byte, error)
}

// MaxInlineBytes is the total tensor size above which Save always writes external data:
// C++ protobuf (onnxruntime, the python checker) refuses messages over 2 GiB.
const MaxInlineBytes = 1_800_000_000

// ExternalAlign is the alignment of every tensor's offset in an external-data file, so that
// onnxruntime can mmap it.
const ExternalAlign = 4096
