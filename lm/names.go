package lm

import (
	"fmt"
	"strconv"
	"strings"
)

// Canonical names of the causal-LM interface.
const (
	InputIDs      = "input_ids"
	AttentionMask = "attention_mask"
	PositionIDs   = "position_ids"
	Logits        = "logits"
	// UseCacheBranch is the bool [1] input of optimum's merged decoder: true runs the
	// with-past branch, false the no-cache one.
	UseCacheBranch = "use_cache_branch"

	pastPrefix    = "past_key_values."
	presentPrefix = "present."
)

// Symbolic dimension names of the with-past interface (optimum / GenAI).
const (
	DimBatch    = "batch_size"
	DimSequence = "sequence_length"
	DimPast     = "past_sequence_length"
	DimTotal    = "total_sequence_length"
)

// Kind is which half of a layer's cache a tensor holds.
type Kind string

// The two halves of a layer's cache.
const (
	Key   Kind = "key"
	Value Kind = "value"
)

// Past is the name of layer i's past input, e.g. past_key_values.0.key.
func Past(i int, k Kind) string { return pastPrefix + strconv.Itoa(i) + "." + string(k) }

// Present is the name of layer i's present output, e.g. present.0.value.
func Present(i int, k Kind) string { return presentPrefix + strconv.Itoa(i) + "." + string(k) }

// ParsePast reports whether name is a past input and of which layer and half.
func ParsePast(name string) (layer int, k Kind, ok bool) { return parse(name, pastPrefix) }

// ParsePresent reports whether name is a present output and of which layer and half.
func ParsePresent(name string) (layer int, k Kind, ok bool) { return parse(name, presentPrefix) }

// PresentOf is the present output that continues the past input name ("" if name is no past).
func PresentOf(name string) string {
	i, k, ok := ParsePast(name)
	if !ok {
		return ""
	}
	return Present(i, k)
}

func parse(name, prefix string) (int, Kind, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, "", false
	}
	num, kind, ok := strings.Cut(rest, ".")
	if !ok || (kind != string(Key) && kind != string(Value)) {
		return 0, "", false
	}
	i, err := strconv.Atoi(num)
	if err != nil || i < 0 || strconv.Itoa(i) != num {
		return 0, "", false
	}
	return i, Kind(kind), true
}

// errorf prefixes lm's errors.
func errorf(format string, args ...any) error { return fmt.Errorf("lm: "+format, args...) }

func itoa(i int) string { return strconv.Itoa(i) }

func join(s []string) string { return "[" + strings.Join(s, " ") + "]" }

func dims(d []int64) string { return fmt.Sprint(d) }
