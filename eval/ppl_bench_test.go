package eval

import (
	"testing"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/internal/testkit"
)

// BenchmarkPerplexityStories measures Perplexity on 100k tokens of the shared math training
// prompts with stories260K (windows of 512, batch 4): go test -bench Perplexity ./eval/.
func BenchmarkPerplexityStories(b *testing.B) {
	s, tok, ctx := stories(b)
	docs, err := data.ReadDocuments(testkit.Shared(b, "data/llm-adapters/math_data.json"))
	if err != nil {
		b.Fatal(err)
	}
	ids := data.Stream(docs, tok)[:100000]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Perplexity(s, ids, ctx, 4); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ids))*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkNLLOf is the Go-side cost per predicted token for a 512-token vocabulary.
func BenchmarkNLLOf(b *testing.B) {
	row := make([]float32, 512)
	for i := range row {
		row[i] = float32(i%17) * 0.37
	}
	b.ResetTimer()
	var s float64
	for i := 0; i < b.N; i++ {
		s += nllOf(row, i%512)
	}
	_ = s
}
