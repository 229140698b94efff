package lora

import (
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/transform/layers"
)

func TestFuseQKV(t *testing.T) {
	fused := []layers.Linear{{Role: "qkv"}, {Role: "o"}, {Role: "up"}, {Role: "down"}}
	split := []layers.Linear{{Role: "q"}, {Role: "k"}, {Role: "v"}, {Role: "up"}}
	cases := []struct {
		roles []string
		ls    []layers.Linear
		want  []string
	}{
		{DefaultTargets, fused, []string{"qkv", "up", "down"}},
		{[]string{"v", "o", "k", "q"}, fused, []string{"o", "qkv"}},
		{DefaultTargets, split, DefaultTargets},             // separate q, k, v: unchanged
		{[]string{"q", "up"}, fused, []string{"q", "up"}},   // not all three: left to fail loudly
		{[]string{"qkv", "o"}, fused, []string{"qkv", "o"}}, // already fused
	}
	for _, c := range cases {
		if got := fuseQKV(c.roles, c.ls); !slices.Equal(got, c.want) {
			t.Errorf("%v over %v: %v, want %v", c.roles, c.ls, got, c.want)
		}
	}
}

// The default targets adapt GPT-2's fused c_attn, c_fc and mlp c_proj (not attn c_proj: o is
// not a default role); asking for q alone is refused with the roles present.
func TestPlanGPT2Defaults(t *testing.T) {
	m, err := gpt2.Build(gpt2.Tiny, 1)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ = layers.Select(ls, "", "")
	p, err := NewPlan(m, ls, Config{Targets: DefaultTargets, Ranks: []int{8, 4}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mod := range p.Modules {
		names = append(names, mod.Name)
	}
	want := []string{
		"transformer.h.0.attn.c_attn", "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj",
		"transformer.h.1.attn.c_attn", "transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj",
	}
	if !slices.Equal(names, want) || !slices.Equal(p.Config.Targets, []string{"qkv", "up", "down"}) {
		t.Fatalf("modules %v, targets %v", names, p.Config.Targets)
	}
	if g := p.Groups[0]; g.Name != "layers.0.qkv" || g.Modules[0] != want[0] {
		t.Fatalf("group %+v", g)
	}
	_, err = NewPlan(m, ls, Config{Targets: []string{"q", "up"}, Ranks: []int{8, 4}})
	if err == nil || !strings.Contains(err.Error(), `target role "q" matches none`) || !strings.Contains(err.Error(), "qkv") {
		t.Fatalf("q alone on GPT-2: %v", err)
	}
}
