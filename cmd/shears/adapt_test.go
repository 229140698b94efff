package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/pipeline"
	"github.com/shears-ml/shears/transform/lora"
)

func TestAdaptStories(t *testing.T) {
	dir := t.TempDir()
	model := importStories(t, dir)
	super := filepath.Join(dir, "super.onnx")
	out, e, code := shears(t, "adapt", model, "-o", super)
	if code != 0 {
		t.Fatalf("adapt: %s", e)
	}
	// 5 layers × (q 64→64, k 64→32, v 64→32, up 64→172, down 172→64): 792·r per layer.
	for _, want := range []string{"qkv  q+k+v       5       15", "total             15       25               126720                 95040              63360",
		"scale 2 = alpha 64 / r_max 32"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	m, err := onnx.Load(super)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	meta, err := lora.ReadConfig(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Groups) != 15 || len(meta.Modules) != 25 || meta.Scale != 2 || meta.Dropout != 0.1 || meta.Train {
		t.Errorf("meta: %d groups, %d modules, scale %g, dropout %g, train %v", len(meta.Groups), len(meta.Modules), meta.Scale, meta.Dropout, meta.Train)
	}

	// JSON, a train graph with gate adapted in the up group.
	super2 := filepath.Join(dir, "super2.onnx")
	out, e, code = shears(t, "adapt", model, "-o", super2, "--targets", "q,k,v,up,gate,down", "--ranks", "16,12,8", "--alpha", "32", "--train", "--json")
	if code != 0 {
		t.Fatalf("adapt --json: %s", e)
	}
	var rep pipeline.AdaptReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	// gate adds 5 × (64+172) per rank: 5·(792+236)·16 = 82,240.
	if rep.Modules != 30 || len(rep.MaskInputs) != 15 || rep.Kinds[1].Kind != "up_gate" || rep.Params["16"] != 82240 || rep.Scale != 2 || !rep.Train {
		t.Errorf("report %+v", rep)
	}
	m2, err := onnx.Load(super2)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	keeps := 0
	for _, in := range m2.Graph().GetInput() {
		if strings.HasPrefix(in.GetName(), "lora_dropout_keep.") {
			keeps++
		}
	}
	if keeps != 30 {
		t.Errorf("%d keep-mask inputs, want 30", keeps)
	}
}

func TestAdaptErrors(t *testing.T) {
	dir := t.TempDir()
	model := importStories(t, dir)
	dst := filepath.Join(dir, "x.onnx")
	cases := []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--targets", "q,wq"}, `target role "wq" matches none`, 1},
		{[]string{"--ranks", "16,24"}, "strictly descending", 1},
		{[]string{"--ranks", "48,32"}, "r_max 48 exceeds min(in, out) = min(64, 32)", 1},
		{[]string{"--groups", "qkv,up+gate,down"}, `names role "gate", which is not a target`, 1},
		{[]string{"--dropout", "1.5"}, "dropout", 1},
		{[]string{"--ranks", "x"}, "invalid argument", 2},
	}
	for _, c := range cases {
		_, e, code := shears(t, append([]string{"adapt", model, "-o", dst}, c.args...)...)
		if code != c.code || !strings.Contains(e, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, e, c.code, c.want)
		}
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("a failed adapt left %s behind", dst)
	}
	super := filepath.Join(dir, "super.onnx")
	if _, e, code := shears(t, "adapt", model, "-o", super); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := shears(t, "adapt", super, "-o", dst); code != 1 || !strings.Contains(e, "already has LoRA adapters") {
		t.Errorf("adapt twice: %d %q", code, e)
	}
	if _, e, code := shears(t, "adapt", model); code != 2 || !strings.Contains(e, "-o SUPER.onnx is required") {
		t.Errorf("missing -o: %d %q", code, e)
	}
	out, _, code := shears(t, "adapt", model, "--dry-run")
	if code != 0 || !strings.Contains(out, "group layers.4.down: mask lora_rank_mask.layers.4.down [32]") {
		t.Errorf("dry run: %d\n%s", code, out)
	}
	help, _, _ := shears(t, "adapt", "--help")
	for _, want := range []string{"alpha / r_max", "--groups", "lora_rank_mask.layers.N.GROUP", "Examples:"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
