package pipeline

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/models"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/quant"
)

// EvalResult is one model measured on one evaluation set: a mean loss in nats per scored
// token and its exponential.
type EvalResult struct {
	Task   string  `json:"task"`   // ppl or answer-loss
	Loss   float64 `json:"loss"`   // mean negative log-likelihood per scored token (nats)
	PPL    float64 `json:"ppl"`    // exp(Loss)
	Tokens int     `json:"tokens"` // tokens scored
	Items  int     `json:"items"`  // documents (ppl) or items (answer-loss)
	// ppl only: the windows the stream was cut into and their length (after the context cap).
	Windows int `json:"windows,omitempty"`
	SeqLen  int `json:"seq_len,omitempty"`
}

// contextOf is the model's context length from its metadata (0 when unknown).
func contextOf(model string) (int, error) {
	m, err := onnx.Load(model)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	return models.ContextLength(m), nil
}

// Perplexity is "shears eval --task ppl": the documents of dataPath (limit > 0 keeps the first
// limit, maxTokens > 0 the first maxTokens tokens) as one token stream (each document BOS …
// EOS when there are several) in windows of seqLen tokens, capped to the model's context. The
// file is read and scored lazily: memory does not grow with its size.
func Perplexity(model, dataPath string, tok tokenizer.Tokenizer, seqLen, batch, limit, maxTokens int, ro runtime.Options) (EvalResult, error) {
	ctx, err := contextOf(model)
	if err != nil {
		return EvalResult{}, err
	}
	if ctx > 0 && seqLen > ctx {
		seqLen = ctx
	}
	r, err := data.OpenDocuments(dataPath)
	if err != nil {
		return EvalResult{}, err
	}
	defer r.Close()
	s, err := runtime.OpenFile(model, ro)
	if err != nil {
		return EvalResult{}, err
	}
	defer s.Close()
	acc, err := eval.NewPerplexityStream(s, seqLen, batch)
	if err != nil {
		return EvalResult{}, err
	}
	fail := func(err error) (EvalResult, error) {
		return EvalResult{}, fmt.Errorf("%s on %s: %w", model, dataPath, err)
	}
	docs, tokens := 0, 0
	add := func(ids ...int) error {
		if maxTokens > 0 && tokens+len(ids) > maxTokens {
			ids = ids[:maxTokens-tokens]
		}
		tokens += len(ids)
		return acc.Add(ids...)
	}
	for (limit <= 0 || docs < limit) && (maxTokens <= 0 || tokens < maxTokens) {
		d, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return EvalResult{}, err
		}
		if docs > 0 { // data.Stream's rule: every document ends with EOS when there are several
			if err := add(tok.EOS()); err != nil {
				return fail(err)
			}
		}
		docs++
		if err := add(data.Tokens(d, tok)...); err != nil {
			return fail(err)
		}
	}
	if docs == 0 {
		return EvalResult{}, fmt.Errorf("read dataset %s: no documents (empty file?)", dataPath)
	}
	if docs > 1 && (maxTokens <= 0 || tokens < maxTokens) {
		if err := add(tok.EOS()); err != nil {
			return fail(err)
		}
	}
	res, err := acc.Finish()
	if err != nil {
		return fail(err)
	}
	return EvalResult{Task: "ppl", Loss: res.NLL, PPL: res.PPL, Tokens: res.Tokens, Items: docs, Windows: res.Windows, SeqLen: seqLen}, nil
}

// AnswerLoss is the cross-entropy over the answer tokens only of an LLM-Adapters test file:
// for each item, BOS + the task's evaluation prompt is the context and the item's answer
// string (e.g. "18.0") the continuation; the loss is −Σ log p(answer tokens) / Σ answer
// tokens over the items (limit > 0 keeps the first limit). It scores what a model puts right
// after "### Response:", which for a model trained on rationales is a harder target than
// its final "The answer is N." — a comparison between models, not an accuracy.
func AnswerLoss(model, dataPath string, tok tokenizer.Tokenizer, limit int, ro runtime.Options) (EvalResult, error) {
	task, err := eval.DetectTask(dataPath)
	if err != nil {
		return EvalResult{}, err
	}
	items, err := eval.ReadItems(dataPath)
	if err != nil {
		return EvalResult{}, err
	}
	if limit > 0 && limit < len(items) {
		items = items[:limit]
	}
	ctx, err := contextOf(model)
	if err != nil {
		return EvalResult{}, err
	}
	s, err := runtime.OpenFile(model, ro)
	if err != nil {
		return EvalResult{}, err
	}
	defer s.Close()
	var nll float64
	var n int
	for i, it := range items {
		seqs, k, _, err := eval.ChoiceTokens(tok, task.Prompt(it), []string{it.Answer}, ctx)
		if err != nil {
			return EvalResult{}, fmt.Errorf("%s item %d: %w", dataPath, i, err)
		}
		sc, err := eval.ScoreContinuations(s, seqs, k)
		if err != nil {
			return EvalResult{}, fmt.Errorf("%s item %d: %w", dataPath, i, err)
		}
		nll -= sc[0].Sum
		n += sc[0].Tokens
	}
	loss := nll / float64(n)
	return EvalResult{Task: "answer-loss", Loss: loss, PPL: math.Exp(loss), Tokens: n, Items: len(items)}, nil
}

// NonZeroParams counts the non-zero values of the model's weights: every linear layer's
// (transform/layers, the LM head included) and every float table a Gather reads (the
// embeddings), each initializer once. Buffers such as RoPE caches and causal masks are not
// parameters and are left out, as is anything tiny outside those (norm scales).
func NonZeroParams(model string) (int64, error) {
	m, err := onnx.Load(model)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	lins, err := layers.Find(m)
	if err != nil {
		return 0, err
	}
	names := map[string]bool{}
	for _, l := range lins {
		names[l.Weight] = true
	}
	for _, e := range layers.Embeddings(m.Graph()) {
		names[e.Table] = true
	}
	var n int64
	for _, t := range m.Graph().GetInitializer() {
		if !names[t.GetName()] || onnx.DataType(t) != onnxpb.TensorProto_FLOAT {
			continue
		}
		v, err := m.Float32s(t)
		if err != nil {
			return 0, fmt.Errorf("%s: initializer %s: %w", model, t.GetName(), err)
		}
		for _, x := range v {
			if x != 0 {
				n++
			}
		}
	}
	// MatMulNBits linears (shears quantize): their dequantized weights' non-zeros.
	infos, _, err := quant.Quantized(m)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", model, err)
	}
	for _, q := range infos {
		n += q.Total - q.Zeros
	}
	return n, nil
}
