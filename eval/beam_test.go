package eval

import (
	"math"
	"reflect"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
)

// Token ids of the bigram graph: 0 = BOS, 1 = a, 2 = b, 3 = EOS.
const bosID, aID, bID, eosID = 0, 1, 2, 3

// bigramProbs[last] is the next-token distribution after token last.
var bigramProbs = [4][4]float64{
	bosID: {0.0001, 0.5, 0.3999, 0.1},
	aID:   {0.0001, 0.3, 0.2999, 0.4},
	bID:   {0.0001, 0.05, 0.0499, 0.9},
	eosID: {0.25, 0.25, 0.25, 0.25},
}

// bigramSession is a graph whose logits at every position are log bigramProbs[token there]:
// logits = Gather(table, input_ids), so each beam's best continuation can be worked out by hand.
func bigramSession(t *testing.T) *runtime.Session {
	t.Helper()
	testkit.ORT(t)
	var table []float32
	for _, row := range bigramProbs {
		for _, p := range row {
			table = append(table, float32(math.Log(p)))
		}
	}
	b := onnx.NewBuilder("bigram", 17)
	ids := b.Input("input_ids", onnxpb.TensorProto_INT64, "batch", "seq")
	tab := b.Const("table", onnx.Float32Tensor("table", []int64{4, 4}, table))
	b.OpOut("Gather", "lookup", []string{tab, ids}, []string{"logits"}, onnx.AttrInt("axis", 0))
	b.Output("logits", onnxpb.TensorProto_FLOAT, "batch", "seq", 4)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	return openModel(t, m)
}

// openModel opens an in-memory model (no external data) for the test's duration.
func openModel(t testing.TB, m *onnx.Model) *runtime.Session {
	t.Helper()
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, "", runtime.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBeamSearchByHand(t *testing.T) {
	s := bigramSession(t)
	stop := []int{eosID}
	// Greedy: BOS → a (0.5) → EOS (0.4): p = 0.2.
	g, err := Generate(s, []int{bosID}, GenOptions{MaxTokens: 5, Stop: stop}, nil)
	if err != nil || !reflect.DeepEqual(g, []int{aID}) {
		t.Fatalf("greedy = %v, %v; want [a]", g, err)
	}
	// Two beams, worked by hand (length penalty 1, lengths count the prompt, EOS excluded):
	//  step 1: live BOS·a (.5), BOS·b (.3999).
	//  step 2: best four: b·EOS .35991, a·EOS .2, a·a .15, a·b .14995 → finished
	//          [b] log(.35991)/2 = −0.5109 and [a] log(.2)/2 = −0.8047; live aa, ab. Not done:
	//          −0.8047 < log(.35991)/2.
	//  step 3: ab·EOS .134955 → finished, score log(.134955)/3 = −0.6676, evicting [a];
	//          aa·EOS .06 scores −0.9378 and is not kept; done: −0.6676 ≥ log(.134955)/3.
	// Best: [b], log-prob log(.35991) — better than the greedy path's log(.2).
	h, err := BeamSearch(s, []int{bosID}, BeamOptions{Beams: 2, MaxTokens: 5, Stop: stop, LengthPenalty: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := math.Log(0.3999 * 0.9)
	if !reflect.DeepEqual(h.IDs, []int{bID}) || !h.Stopped || !(math.Abs(h.LogProb-want) <= 1e-6) || !(math.Abs(h.Score-want/2) <= 1e-6) {
		t.Errorf("2 beams = %+v; want [b], log-prob %.6f, score %.6f, stopped", h, want, want/2)
	}
	// One beam is greedy decoding.
	h1, err := BeamSearch(s, []int{bosID}, BeamOptions{Beams: 1, MaxTokens: 5, Stop: stop, LengthPenalty: 1})
	if err != nil || !reflect.DeepEqual(h1.IDs, []int{aID}) || !(math.Abs(h1.LogProb-math.Log(0.2)) <= 1e-6) {
		t.Errorf("1 beam = %+v, %v; want [a] with log-prob log(.2)", h1, err)
	}
	// Out of tokens after one step: the live beams are scored as they stand; a (.5) wins.
	h2, err := BeamSearch(s, []int{bosID}, BeamOptions{Beams: 2, MaxTokens: 1, Stop: stop, LengthPenalty: 1})
	if err != nil || !reflect.DeepEqual(h2.IDs, []int{aID}) || h2.Stopped || !(math.Abs(h2.Score-math.Log(0.5)/2) <= 1e-6) {
		t.Errorf("2 beams, 1 token = %+v, %v; want [a] unstopped, score log(.5)/2", h2, err)
	}
	// The context limit ends the search like the token budget.
	h3, err := BeamSearch(s, []int{bosID}, BeamOptions{Beams: 2, MaxTokens: 5, Stop: stop, MaxContext: 2, LengthPenalty: 1})
	if err != nil || !reflect.DeepEqual(h3.IDs, []int{aID}) {
		t.Errorf("2 beams, context 2 = %+v, %v; want [a]", h3, err)
	}
	if _, err := BeamSearch(s, nil, BeamOptions{Beams: 2}); err == nil {
		t.Error("empty prompt: no error")
	}
	if _, err := BeamSearch(s, []int{bosID}, BeamOptions{Beams: 0}); err == nil {
		t.Error("0 beams: no error")
	}
}

func TestScoreContinuationsByHand(t *testing.T) {
	s := bigramSession(t)
	// BOS a b EOS and BOS b (padded): continuations after the shared BOS.
	got, err := ScoreContinuations(s, [][]int{{bosID, aID, bID, eosID}, {bosID, bID}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	want0 := math.Log(0.5) + math.Log(0.2999) + math.Log(0.9)
	want1 := math.Log(0.3999)
	if !(math.Abs(got[0].Sum-want0) <= 1e-6) || got[0].Tokens != 3 || !(math.Abs(got[0].Mean-want0/3) <= 1e-6) {
		t.Errorf("seq 0: %+v, want sum %.6f over 3", got[0], want0)
	}
	if !(math.Abs(got[1].Sum-want1) <= 1e-6) || got[1].Tokens != 1 {
		t.Errorf("seq 1: %+v, want sum %.6f over 1", got[1], want1)
	}
	if _, err := ScoreContinuations(s, [][]int{{bosID}}, 1); err == nil {
		t.Error("empty continuation: no error")
	}
}

func TestTopK(t *testing.T) {
	v := []float64{0.1, 0.5, 0.5, -1, 0.7, 0.5}
	if got := topK(v, 3); !reflect.DeepEqual(got, []int{4, 1, 2}) {
		t.Errorf("topK = %v, want [4 1 2]", got)
	}
	if got := topK(v, 10); !reflect.DeepEqual(got, []int{4, 1, 2, 5, 0, 3}) {
		t.Errorf("topK all = %v", got)
	}
}
