package layers

import (
	"regexp"
	"strings"
)

// family maps the name tokens of one model family's linear layers to roles. The first family
// whose tokens match a layer's node or weight name labels it.
type family struct {
	name  string
	roles map[string]string // name token → role
}

// families is the one registry of naming rules. Roles use the LLaMA vocabulary where the
// meaning is the same, so groups such as "qkv" or "up" work across families.
var families = []family{
	{"llama", map[string]string{ // HF LLaMA, Mistral, Qwen2, OPT attention
		"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o",
		"gate_proj": "gate", "up_proj": "up", "down_proj": "down",
	}},
	{"llama2c", map[string]string{
		"wq": "q", "wk": "k", "wv": "v", "wo": "o", "w1": "gate", "w3": "up", "w2": "down",
	}},
	{"gpt2", map[string]string{"c_attn": "qkv", "c_fc": "up"}}, // c_proj depends on its parent, see below
	{"opt", map[string]string{"out_proj": "o", "fc1": "up", "fc2": "down"}},
	{"phi", map[string]string{"qkv_proj": "qkv", "gate_up_proj": "gate_up", "dense": "o"}},
	{"mpt", map[string]string{"wqkv": "qkv"}},
	{"neox", map[string]string{"query_key_value": "qkv", "dense_h_to_4h": "up", "dense_4h_to_h": "down"}},
}

// headTokens mark the LM head (never a target unless included).
var headTokens = map[string]bool{"lm_head": true, "output": true, "embed_out": true, "classifier": true}

// blockRe finds the decoder block index in names such as "/model/layers.3/...",
// "/layers.3/wq/MatMul", "transformer.h.3.attn" or "blocks_3".
var blockRe = regexp.MustCompile(`(?:^|[/._])(?:layers|layer|h|blocks|block)[._/](\d+)(?:[/._]|$)`)

var tokenSplit = regexp.MustCompile(`[/.:]+`)

// labelByName returns the block and role the names give, with ok=false when no rule applies.
func labelByName(names ...string) (block int, role string, head bool, ok bool) {
	block = -1
	for _, n := range names {
		if m := blockRe.FindStringSubmatch(n); m != nil && block < 0 {
			block = atoi(m[1])
		}
	}
	for _, n := range names {
		toks := tokenSplit.Split(strings.ToLower(n), -1)
		for i := len(toks) - 1; i >= 0; i-- {
			t := toks[i]
			if t == "c_proj" { // GPT-2: attn.c_proj is o, mlp.c_proj is down
				if i > 0 && toks[i-1] == "mlp" {
					return block, "down", false, true
				}
				return block, "o", false, true
			}
			if t == "dense" && i > 0 && toks[i-1] == "mlp" { // Phi-2's mlp is fc1/fc2; NeoX uses attention.dense
				continue
			}
			for _, f := range families {
				if r, hit := f.roles[t]; hit {
					return block, r, false, true
				}
			}
			if headTokens[t] && block < 0 {
				return block, "lm_head", true, true
			}
		}
	}
	return block, "", false, false
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
