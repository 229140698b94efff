package models

import (
	"strconv"
	"strings"

	"github.com/shears-ml/shears/onnx"
)

// ContextLength returns the model's maximum sequence length, or 0 when it cannot tell.
// It reads metadata ("max_position_embeddings", "context_length", "max_seq_len") and falls
// back to the first dimension of the position tables that exports bake in (RoPE cos/sin,
// causal masks), which bounds the sequence length the graph accepts.
func ContextLength(m *onnx.Model) int {
	for _, p := range m.Proto.GetMetadataProps() {
		switch strings.ToLower(p.GetKey()) {
		case "max_position_embeddings", "context_length", "max_seq_len", "n_ctx":
			if n, err := strconv.Atoi(p.GetValue()); err == nil && n > 0 {
				return n
			}
		}
	}
	best := 0
	for _, t := range m.Graph().GetInitializer() {
		name := strings.ToLower(t.GetName())
		d := t.GetDims()
		if len(d) < 2 {
			continue
		}
		switch {
		case strings.Contains(name, "cos") || strings.Contains(name, "sin") || strings.Contains(name, "freq"):
			if n := int(d[0]); n > best {
				best = n
			}
		case strings.Contains(name, "mask") && d[len(d)-1] == d[len(d)-2]:
			if n := int(d[len(d)-1]); n > best {
				best = n
			}
		}
	}
	return best
}
