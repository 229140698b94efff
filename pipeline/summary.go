package pipeline

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/shears-ml/shears/onnx"
)

// StageTime is one stage's wall time; Cached stages were skipped and report the time they
// took when they ran.
type StageTime struct {
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
	Cached  bool    `json:"cached"`
}

// Summary is summary.json: stage times and one table per evaluation set.
type Summary struct {
	Work     string      `json:"work"`
	Date     time.Time   `json:"date"`
	Seconds  float64     `json:"seconds"` // this Run's wall time
	Stages   []StageTime `json:"stages"`
	RankNote string      `json:"rank_space"`
	Tables   []Table     `json:"tables"`
}

// Table is one evaluation set measured on every model.
type Table struct {
	Name string     `json:"name"`
	Task string     `json:"task"`
	Data string     `json:"data"`
	Rows []TableRow `json:"rows"`
}

// TableRow is one model on one evaluation set.
type TableRow struct {
	Model         string  `json:"model"`
	Key           string  `json:"key"`
	File          string  `json:"file"`
	Loss          float64 `json:"loss"`
	PPL           float64 `json:"ppl"`
	Tokens        int     `json:"tokens"`
	NonZero       int64   `json:"nonzero_params"` // of the base model the row runs on
	AdapterParams int64   `json:"adapter_params"`
	TrainSeconds  float64 `json:"train_seconds"`
}

// evalResult is an eval stage's record for one model.
type evalResult struct {
	NonZero int64                 `json:"nonzero_params"`
	Sets    map[string]EvalResult `json:"sets"`
}

// evaluate measures every row on every evaluation set (one cached stage per row).
func (rn *runner) evaluate(rows []model) (*Summary, error) {
	r := rn.r
	files := map[string]string{"tokenizer": r.Tokenizer}
	for _, e := range r.Eval {
		files["eval:"+e.Name] = e.Data
	}
	sum := &Summary{Work: r.Work, Date: time.Now().UTC(),
		RankNote: fmt.Sprintf("ranks %v, alpha %g (scale %g = alpha / r_max)", r.Adapt.Ranks, r.Adapt.Alpha, r.Adapt.Alpha/float64(r.Adapt.Ranks[0]))}
	results := make([]evalResult, len(rows))
	for i, m := range rows {
		in, err := rn.inputs(map[string]string{"model": m.ID}, files)
		if err != nil {
			return nil, err
		}
		if m.Base != m.Path {
			bh, err := rn.files.of(m.Base)
			if err != nil {
				return nil, err
			}
			in["base"] = bh
		}
		stage := "eval-" + evalKey(m.Key)
		_, err = rn.do(stage, r.Eval, in, nil, &results[i], func(bool) (any, error) {
			nz, err := NonZeroParams(m.Base)
			if err != nil {
				return nil, err
			}
			res := evalResult{NonZero: nz, Sets: map[string]EvalResult{}}
			for _, e := range r.Eval {
				var er EvalResult
				if e.Task == "ppl" {
					er, err = Perplexity(m.Path, e.Data, rn.tok, e.SeqLen, e.Batch, e.Limit, 0, rn.ro)
				} else {
					er, err = AnswerLoss(m.Path, e.Data, rn.tok, e.Limit, rn.ro)
				}
				if err != nil {
					return nil, fmt.Errorf("%s: %w", e.Name, err)
				}
				fmt.Fprintf(rn.o.Log, "   %-32s %-20s loss %.4f  ppl %.3f\n", m.Label, e.Name, er.Loss, er.PPL)
				res.Sets[e.Name] = er
			}
			return res, nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, e := range r.Eval {
		t := Table{Name: e.Name, Task: e.Task, Data: e.Data}
		for i, m := range rows {
			er := results[i].Sets[e.Name]
			rel, err := filepath.Rel(r.Work, m.Path)
			if err != nil || strings.HasPrefix(rel, "..") {
				rel = m.Path
			}
			t.Rows = append(t.Rows, TableRow{Model: m.Label, Key: m.Key, File: rel, Loss: er.Loss, PPL: er.PPL, Tokens: er.Tokens,
				NonZero: results[i].NonZero, AdapterParams: m.Adapter, TrainSeconds: m.TrainS})
		}
		sum.Tables = append(sum.Tables, t)
	}
	sum.Stages = rn.stages
	return sum, nil
}

// Markdown renders the summary: stage times, then one table per evaluation set.
func (s *Summary) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Shears pipeline summary\n\n%s · work directory `%s` · %s\n\n", s.Date.Format("2006-01-02 15:04 UTC"), s.Work, s.RankNote)
	fmt.Fprintf(&b, "| stage | seconds |\n|---|---:|\n")
	for _, st := range s.Stages {
		note := ""
		if st.Cached {
			note = " (cached)"
		}
		fmt.Fprintf(&b, "| %s%s | %.1f |\n", st.Stage, note, st.Seconds)
	}
	fmt.Fprintf(&b, "| **this run** | **%.1f** |\n", s.Seconds)
	for _, t := range s.Tables {
		cols, ppl := "perplexity | loss (nats)", true
		if t.Task == "answer-loss" {
			cols, ppl = "answer-token loss (nats) | exp(loss)", false
		}
		fmt.Fprintf(&b, "\n## %s (%s, `%s`)\n\n", t.Name, t.Task, filepath.Base(t.Data))
		fmt.Fprintf(&b, "| model | %s | non-zero params | adapter params | training time |\n|---|---:|---:|---:|---:|---:|\n", cols)
		for _, r := range t.Rows {
			v := fmt.Sprintf("%.3f | %.4f", r.PPL, r.Loss)
			if !ppl {
				v = fmt.Sprintf("%.4f | %.1f", r.Loss, r.PPL)
			}
			train := "–"
			if r.TrainSeconds > 0 {
				train = fmt.Sprintf("%.1fs", r.TrainSeconds)
			}
			adapter := "–"
			if r.AdapterParams > 0 {
				adapter = groupDigits(r.AdapterParams)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Model, v, groupDigits(r.NonZero), adapter, train)
		}
	}
	return b.String()
}

// write writes summary.md and summary.json into dir.
func (s *Summary) write(dir string) error {
	if err := onnx.WriteFileAtomic(filepath.Join(dir, "summary.md"), []byte(s.Markdown())); err != nil {
		return err
	}
	return WriteJSON(filepath.Join(dir, "summary.json"), s)
}

// groupDigits writes n with thousands separators (1,234,567).
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
