package train

import (
	"fmt"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
)

// stories imports ../shared/models/stories260K/stories260K.bin (skipping when absent).
func stories(t testing.TB) *onnx.Model {
	t.Helper()
	m, err := llama2c.Import(testkit.StoriesShaped(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// normWeights are the RMSNorm weights of stories260K's five layers and the final norm.
func normWeights() []string {
	var n []string
	for i := 0; i < 5; i++ {
		n = append(n, fmt.Sprintf("model.layers.%d.input_layernorm.weight", i),
			fmt.Sprintf("model.layers.%d.post_attention_layernorm.weight", i))
	}
	return append(n, "model.norm.weight")
}
