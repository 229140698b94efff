package pipeline

import (
	"fmt"

	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/onnx"
)

// serve writes the run's Shears model (the searched export, else the heuristic one) as a
// model folder at dir, replacing what is there; the card's evaluation table is every
// evaluation set's rows, so the model is shown beside the bases and baselines.
func (rn *runner) serve(dir string, rows []model, sum *Summary) error {
	var pick *model
	for i := range rows {
		if rows[i].Key == "nls-searched" || (rows[i].Key == "nls-heuristic" && pick == nil) {
			pick = &rows[i]
		}
	}
	if pick == nil {
		return fmt.Errorf("serve: the run made no Shears model to write")
	}
	card := deploy.Card{Base: rn.r.Model}
	for _, t := range sum.Tables {
		for _, row := range t.Rows {
			note := row.Model
			if row.Key == pick.Key {
				note += " (this model)"
			}
			card.Eval = append(card.Eval, deploy.EvalRow{Name: t.Name + " perplexity", Value: row.PPL, Note: note})
		}
	}
	m, err := onnx.Load(pick.Path)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer m.Close()
	rep, err := deploy.WriteFolder(m, onnx.SaveOptions{ExternalData: m.HasExternal()}, dir, true,
		deploy.Options{Source: pick.Path, Tokenizer: rn.r.Tokenizer, Card: card, Warn: func(s string) { fmt.Fprintf(rn.o.Log, "serve: warning: %s\n", s) }})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintf(rn.o.Log, "serve: %s (%s) written as a model folder in %s\n", pick.Label, pick.Path, rep.Dir)
	return nil
}
