package pipeline

import (
	"bufio"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/transform/lora"
)

// The search log round-trips every evaluation (ranks by group name, value, parameters) and the
// plot is a PNG, for an evolution-shaped result (no session needed).
func TestSearchLogAndPlot(t *testing.T) {
	var evs []nls.Evaluation
	for i, r := range []int{8, 6, 4, 6, 8} {
		evs = append(evs, nls.Evaluation{Index: i, Ranks: []int{r, 4}, RankMap: lora.Ranks{"layers.0.qkv": r, "layers.0.up": 4},
			Metric: "val_loss", Value: 2 + 1/float64(r) + float64(i)/100, Params: int64(100 * r)})
	}
	res := &nls.SearchResult{Strategy: nls.StrategyEvolution, Metric: nls.MetricLoss, Budget: 5, Best: evs[0], Heuristic: evs[1],
		Front: []nls.Evaluation{evs[2], evs[1], evs[0]}, Evaluations: evs, Generations: 2}
	dir := t.TempDir()
	logp := filepath.Join(dir, SearchLogFile)
	if err := WriteSearchLog(logp, evs); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(logp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for ; sc.Scan(); n++ {
		var got nls.Evaluation
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got.Index != n || got.Value != evs[n].Value || got.Params != evs[n].Params || got.RankMap["layers.0.qkv"] != evs[n].Ranks[0] || got.Metric != "val_loss" {
			t.Fatalf("log line %d: %+v", n, got)
		}
	}
	if n != len(evs) {
		t.Fatalf("%d log lines, want %d", n, len(evs))
	}
	pngPath := filepath.Join(dir, SearchPlotFile)
	if err := PlotSearch(pngPath, "evolution", res); err != nil {
		t.Fatal(err)
	}
	pf, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	img, err := png.Decode(pf)
	if err != nil || img.Bounds().Dx() < 500 {
		t.Fatalf("plot: %v", err)
	}
	if err := PlotSearch(pngPath, "empty", &nls.SearchResult{Metric: nls.MetricLoss}); err == nil {
		t.Error("a search without evaluations plotted")
	}
}
