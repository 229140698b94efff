package pipeline

import (
	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/transform/merge"
)

// search picks a sub-adapter of the trained run with the recipe's strategy (nls.RunSearch, as
// "shears search" does) and writes search/config.json, search.jsonl and the Pareto plot.
func (rn *runner) search(runDir, runID string) (*merge.Selection, string, error) {
	s := rn.r.Search
	out := rn.path("search", "config.json")
	in, err := rn.inputs(map[string]string{"run": runID}, map[string]string{"data": s.Data, "tokenizer": rn.r.Tokenizer})
	if err != nil {
		return nil, "", err
	}
	var sel merge.Selection
	id, err := rn.do("search", s, in, []string{out}, &sel, func(bool) (any, error) {
		run, err := nls.LoadRun(runDir)
		if err != nil {
			return nil, err
		}
		defer run.Model.Close()
		rep, err := nls.RunSearch(nls.SearchJob{Run: run, Data: s.Data, Tokenizer: rn.r.Tokenizer, Metric: s.Metric,
			Beams: s.Beams, Choice: s.Choice, Limit: s.Limit, Cutoff: s.Cutoff, Batch: s.Batch, Runtime: rn.ro, Config: out,
			Search: nls.SearchOptions{Strategy: s.Strategy, Budget: s.Budget, Seed: s.Seed}})
		if err != nil {
			return nil, err
		}
		for _, n := range rep.Notes {
			rn.logf("   note: %s\n", n)
		}
		return merge.ReadSelection(out)
	})
	if err != nil {
		return nil, "", err
	}
	return &sel, id, nil
}
