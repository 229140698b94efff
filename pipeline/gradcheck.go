package pipeline

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/train"
)

// GradcheckOptions configure Gradcheck ("shears gradcheck").
type GradcheckOptions struct {
	Model string
	// Wrt is a regular expression selecting the initializers whose gradients are checked.
	Wrt        string
	Batch, Seq int
	Samples    int    // coordinates checked per tensor
	Seed       uint64 // the random ids and the sampled coordinates
	Eps        float64
	Tol        float64 // the largest relative error that passes (0: train.GradCheckTolerance)
	Float32    bool    // check the float32 graph instead of a float64 copy
	Data       string  // text whose first Batch × Seq tokens are the batch; random ids when empty
	Tokenizer  string  // with Data
	SaveGraph  string  // also save the float32 train-step graph here
}

// GradcheckReport is Gradcheck's result ("shears gradcheck --json" prints it): per tensor the
// largest relative error, the overall one, and the tolerance it is held to.
type GradcheckReport struct {
	train.GradCheckReport
	Tolerance float64 `json:"tolerance"`
	// Pass is MaxRelErr ≤ Tolerance (false for NaN).
	Pass bool `json:"pass"`
}

// Check refuses options that cannot run, naming the flags (ErrUsage).
func (o GradcheckOptions) Check() error {
	if o.Wrt == "" {
		return fmt.Errorf("%w: --wrt REGEX is required", ErrUsage)
	}
	if _, err := regexp.Compile(o.Wrt); err != nil {
		return fmt.Errorf("%w: --wrt: %v", ErrUsage, err)
	}
	if o.Batch < 1 || o.Seq < 2 || o.Samples < 1 {
		return fmt.Errorf("%w: need --batch ≥ 1, --seq-len ≥ 2 and --samples ≥ 1", ErrUsage)
	}
	return nil
}

// Gradcheck builds the train step of the model (forward, causal-LM loss, backward) with the
// initializers Wrt matches as trainable and compares its gradients with central finite
// differences (train.GradCheck, on the CPU; onnxruntime must be initialised). A failed
// comparison is a report with Pass false, not an error.
func Gradcheck(o GradcheckOptions) (*GradcheckReport, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	re := regexp.MustCompile(o.Wrt)
	m, err := onnx.Load(o.Model)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	var names []string
	for _, t := range m.Graph().GetInitializer() {
		if re.MatchString(t.GetName()) {
			names = append(names, t.GetName())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("--wrt %q matches no initializer of %s", o.Wrt, o.Model)
	}
	sort.Strings(names)
	gopts := train.GradCheckOptions{Batch: o.Batch, Seq: o.Seq, Samples: o.Samples, Seed: o.Seed, Eps: o.Eps, Float32: o.Float32}
	if o.Data != "" {
		if gopts.IDs, err = gradcheckBatch(o); err != nil {
			return nil, err
		}
	}
	rep, st, err := train.GradCheck(m, names, gopts)
	if err != nil {
		return nil, err
	}
	if o.SaveGraph != "" {
		if err := st.Model.Save(o.SaveGraph, onnx.SaveOptions{}); err != nil {
			return nil, fmt.Errorf("--save-graph: %w", err)
		}
	}
	tol := o.Tol
	if tol == 0 {
		tol = train.GradCheckTolerance(o.Float32)
	}
	return &GradcheckReport{GradCheckReport: *rep, Tolerance: tol, Pass: rep.MaxRelErr <= tol}, nil
}

// gradcheckBatch is the first Batch × Seq tokens of o.Data.
func gradcheckBatch(o GradcheckOptions) ([]int64, error) {
	tok, err := loadTokenizer(o.Tokenizer)
	if err != nil {
		return nil, err
	}
	docs, err := data.ReadDocuments(o.Data)
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	ids := data.Stream(docs, tok)
	n := o.Batch * o.Seq
	if len(ids) < n {
		return nil, fmt.Errorf("--data %s: %d tokens, the batch needs %d", o.Data, len(ids), n)
	}
	out := make([]int64, n)
	for i, id := range ids[:n] {
		out[i] = int64(id)
	}
	return out, nil
}
