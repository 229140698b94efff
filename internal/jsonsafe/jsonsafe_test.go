package jsonsafe

import (
	"encoding/json"
	"math"
	"testing"
)

type inner struct {
	X float64 `json:"x"`
}

type report struct {
	*inner
	Name  string             `json:"name"`
	PPL   float64            `json:"ppl"`
	Loss  float32            `json:"loss,omitempty"`
	Skip  float64            `json:"-"`
	Per   map[string]float64 `json:"per"`
	Rows  []inner            `json:"rows"`
	Empty []int              `json:"empty,omitempty"`
}

func TestNonFiniteBecomesNullInFieldOrder(t *testing.T) {
	r := report{inner: &inner{X: math.Inf(1)}, Name: "m", PPL: math.NaN(), Loss: 2, Skip: math.NaN(),
		Per: map[string]float64{"a": math.Inf(-1), "b": 1}, Rows: []inner{{1}, {math.NaN()}}}
	b, nf, err := Marshal(r, "")
	if err != nil || !nf {
		t.Fatalf("%v %v", err, nf)
	}
	want := `{"x":null,"name":"m","ppl":null,"loss":2,"per":{"a":null,"b":1},"rows":[{"x":1},{"x":null}]}` + "\n"
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	// A finite value is encoded by encoding/json itself, byte for byte.
	r = report{inner: &inner{X: 1}, Name: "m", PPL: 3, Per: map[string]float64{"b": 1}}
	b, nf, err = Marshal(r, "  ")
	want2, _ := json.MarshalIndent(r, "", "  ")
	if err != nil || nf || string(b) != string(want2)+"\n" {
		t.Fatalf("finite: %v %v %s", err, nf, b)
	}
}
