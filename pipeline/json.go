package pipeline

import (
	"fmt"

	"github.com/shears-ml/shears/internal/jsonsafe"
	"github.com/shears-ml/shears/onnx"
)

// MarshalJSON is the one JSON form of every report, manifest and --json output: indented by
// two spaces, ending with a newline, NaN and ±Inf written as null (nonFinite says so) instead
// of failing the whole report of a diverged model.
func MarshalJSON(v any) (b []byte, nonFinite bool, err error) {
	return jsonsafe.Marshal(v, "  ")
}

// WriteJSON writes v as MarshalJSON's indented JSON atomically (a temporary file renamed into
// place, so a failed write leaves the previous file).
func WriteJSON(path string, v any) error {
	b, _, err := MarshalJSON(v)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return onnx.WriteFileAtomic(path, b)
}
