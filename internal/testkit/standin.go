package testkit

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Stand-ins: what a test gets when it needs stories260K's shape and the llama2.c import path
// but not its trained weights, and the real files are neither in ../shared nor fetchable (a
// clone with no network). Tests that check the trained model's behaviour (goldens, learned
// text) keep Shared, and skip there.

// StoriesShaped returns stories260K.bin (Shared, fetched when need be) or else a random-weight
// llama2.c checkpoint of the same shape (dim 64, hidden 172, 5 layers, 8 heads, 4 KV heads,
// vocab 512, 512 positions; N(0, 1/in) weights, N(0, 0.1²) embeddings so the tied head's
// logits stay O(1) and perplexity near the vocabulary size, unit norms) written into the test's
// folder.
func StoriesShaped(t testing.TB) string {
	t.Helper()
	if p, why := FindShared(t, "models/stories260K/stories260K.bin"); p != "" {
		return p
	} else {
		t.Logf("%s; using a random-weight checkpoint of its shape", why)
	}
	p := filepath.Join(t.TempDir(), standInName)
	if err := os.WriteFile(p, llama2cCheckpoint(64, 172, 5, 8, 4, 512, 512, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TrainedStories reports whether StoriesShaped gives the real, trained stories260K: tests
// bound a trained model's behaviour (perplexity below the vocabulary size) only then.
func TrainedStories(t testing.TB) bool {
	t.Helper()
	p, _ := FindShared(t, "models/stories260K/stories260K.bin")
	return p != ""
}

const standInName = "stories260K-shaped.bin"

// Tok512Shaped returns tok512.bin (Shared, fetched when need be) or else a llama2.c tokenizer
// of at most 512 pieces trained on TokCorpus (ids fit a 512-token model).
func Tok512Shaped(t testing.TB) string {
	t.Helper()
	if p, why := FindShared(t, "models/stories260K/tok512.bin"); p != "" {
		return p
	} else {
		t.Logf("%s; using a tokenizer trained on testkit's corpus", why)
	}
	return Tokenizer(t, 512)
}

// Dataset returns ../shared/data/llm-adapters/<name>, or else the small file of the same
// format and name the project generates in testdata/llm-adapters (testdata/llm-adapters/make.py),
// skipping only when neither exists.
func Dataset(t testing.TB, name string) string {
	t.Helper()
	if p, _ := FindShared(t, "data/llm-adapters/"+name); p != "" {
		return p
	}
	p := filepath.Join(RepoRoot(t), "testdata", "llm-adapters", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("dataset %s: neither ../shared/data/llm-adapters nor testdata/llm-adapters has it", name)
	}
	return p
}

// llama2cCheckpoint is a llama2.c legacy-format checkpoint (7 int32 header, then float32
// arrays; a positive vocab means the classifier is tied to the embedding) with random weights.
func llama2cCheckpoint(dim, hidden, layers, heads, kvHeads, vocab, seq int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	kvDim := dim / heads * kvHeads
	var b []byte
	for _, v := range []int{dim, hidden, layers, heads, kvHeads, vocab, seq} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	put := func(n int, f func() float64) {
		for i := 0; i < n; i++ {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(f())))
		}
	}
	normal := func(in int) func() float64 {
		s := 1 / math.Sqrt(float64(in))
		return func() float64 { return rng.NormFloat64() * s }
	}
	one := func() float64 { return 1 }
	put(vocab*dim, func() float64 { return 0.1 * rng.NormFloat64() }) // tok_embeddings: the tied head gives logits ≈ N(0, 0.8²)
	put(layers*dim, one)                                              // rms_att
	put(layers*dim*dim, normal(dim))                                  // wq [out, in]
	put(layers*kvDim*dim, normal(dim))                                // wk
	put(layers*kvDim*dim, normal(dim))                                // wv
	put(layers*dim*dim, normal(dim))                                  // wo
	put(layers*dim, one)                                              // rms_ffn
	put(layers*hidden*dim, normal(dim))                               // w1
	put(layers*dim*hidden, normal(hidden))                            // w2
	put(layers*hidden*dim, normal(dim))                               // w3
	put(dim, one)                                                     // rms_final
	half := dim / heads / 2
	for _, trig := range []func(float64) float64{math.Cos, math.Sin} { // freq_cis_real, _imag
		for p := 0; p < seq; p++ {
			for i := 0; i < half; i++ {
				b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(trig(float64(p)*math.Pow(10000, -float64(2*i)/float64(2*half))))))
			}
		}
	}
	return b
}
