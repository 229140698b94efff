package deploy

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/shears-ml/shears/onnx"
)

// Names of optimum's with-past interface, as GenAI's config templates spell them.
const (
	pastKeyTemplate     = "past_key_values.%d.key"
	pastValueTemplate   = "past_key_values.%d.value"
	presentKeyTemplate  = "present.%d.key"
	presentValueTmpl    = "present.%d.value"
	inputIDsName        = "input_ids"
	attentionMaskName   = "attention_mask"
	positionIDsName     = "position_ids"
	logitsName          = "logits"
	folderModelSubdir   = "onnx"
	folderModelFile     = "model.onnx"
	folderDataFile      = "model.onnx_data"
	folderModelRelative = folderModelSubdir + "/" + folderModelFile
)

var (
	pastRe    = regexp.MustCompile(`^past_key_values\.(\d+)\.(key|value)$`)
	presentRe = regexp.MustCompile(`^present\.(\d+)\.(key|value)$`)
)

// iface is which of optimum's causal-LM names a graph has.
type iface struct {
	inputIDs, mask, positions, logits bool
	past, present                     int // layers with both key and value
}

func readIface(m *onnx.Model) iface {
	var f iface
	pk, pv, qk, qv := map[int]bool{}, map[int]bool{}, map[int]bool{}, map[int]bool{}
	mark := func(re *regexp.Regexp, name string, k, v map[int]bool) {
		if s := re.FindStringSubmatch(name); s != nil {
			i, _ := strconv.Atoi(s[1])
			if s[2] == "key" {
				k[i] = true
			} else {
				v[i] = true
			}
		}
	}
	for _, in := range m.Graph().GetInput() {
		switch in.GetName() {
		case inputIDsName:
			f.inputIDs = true
		case attentionMaskName:
			f.mask = true
		case positionIDsName:
			f.positions = true
		}
		mark(pastRe, in.GetName(), pk, pv)
	}
	for _, out := range m.Graph().GetOutput() {
		if out.GetName() == logitsName {
			f.logits = true
		}
		mark(presentRe, out.GetName(), qk, qv)
	}
	count := func(k, v map[int]bool) int {
		n := 0
		for n < len(k)+1 && k[n] && v[n] {
			n++
		}
		return n
	}
	f.past, f.present = count(pk, pv), count(qk, qv)
	return f
}

// withPast reports whether the graph has the full with-past interface for layers blocks.
func (f iface) withPast(layers int) bool {
	return f.inputIDs && f.mask && f.logits && f.past == layers && f.present == layers && layers > 0
}

// check compares the graph's interface with the facts: a causal LM's input_ids and logits,
// and as many past/present pairs as layers when it has a cache at all.
func (f iface) check(name string, facts *Facts) error {
	if !f.inputIDs || !f.logits {
		return fmt.Errorf("deploy: %s is not a causal LM with optimum's names (want an input_ids input and a logits output)", name)
	}
	if (f.past > 0 || f.present > 0) && (f.past != facts.Layers() || f.present != facts.Layers()) {
		return fmt.Errorf("deploy: %s has %d past and %d present key/value pairs, but its config says %d layers", name, f.past, f.present, facts.Layers())
	}
	return nil
}
