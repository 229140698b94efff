package main

import (
	"bytes"
	"slices"
	"sort"
	"strings"
	"testing"
)

// commandOrder is the one list of verbs: it names every registered command once, and the
// overview lists them in its order; a wrong positional count is a usage error (exit 2) from
// the dispatcher, before the command runs.
func TestCommandOrderListsEveryCommand(t *testing.T) {
	var registered []string
	for n := range registry {
		registered = append(registered, n)
	}
	sort.Strings(registered)
	listed := slices.Clone(commandOrder)
	sort.Strings(listed)
	if !slices.Equal(registered, listed) {
		t.Fatalf("registered %v, commandOrder %v", registered, commandOrder)
	}
	var out bytes.Buffer
	overview(&out)
	last := -1
	for _, n := range commandOrder {
		i := strings.Index(out.String(), "\n  "+n+" ")
		if !(i > last) {
			t.Fatalf("overview lists %s at %d, after the previous command (%d):\n%s", n, i, last, out.String())
		}
		last = i
	}
	for _, argv := range [][]string{{"inspect"}, {"inspect", "a.onnx", "b.onnx"}, {"import", "hf"}, {"generate"}} {
		var o, e bytes.Buffer
		if code := run(argv, &o, &e); code != 2 || !strings.Contains(e.String(), "expected "+registry[argv[0]].positional) {
			t.Errorf("%v: exit %d, %s", argv, code, e.String())
		}
	}
}
