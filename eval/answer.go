package eval

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Kind is how a task's answers are parsed and compared.
type Kind int

const (
	// Numeric tasks (GSM8K, SVAMP, MAWPS): the last number in the response, compared within 0.001.
	Numeric Kind = iota
	// Letter is AQuA: the first capital A–E anywhere in the response (the reference's quirk).
	Letter
	// Label tasks (the commonsense sets): the first of a fixed set of labels, compared exactly.
	Label
)

// Task is one of the reference evaluation sets. Its answer rule is the reference's
// (METHOD.md §4, "Answer parsing and scoring").
type Task struct {
	Name   string   // canonical name: gsm8k, svamp, mawps, aqua, boolq, piqa, siqa, arc-e, arc-c, obqa, hellaswag, winogrande
	Kind   Kind     // how answers are parsed
	Math   bool     // evaluated with the math prompt (28-space indent) and 256 new tokens
	Labels []string // the answer alternatives (Letter and Label kinds), in regex order
	Marker string   // the substring of a dataset file name that selects the task (case-insensitive)
}

var tasks = []Task{
	{Name: "gsm8k", Kind: Numeric, Math: true, Marker: "gsm8k"},
	{Name: "svamp", Kind: Numeric, Math: true, Marker: "svamp"},
	{Name: "mawps", Kind: Numeric, Math: true, Marker: "mawps"},
	{Name: "aqua", Kind: Letter, Math: true, Labels: []string{"A", "B", "C", "D", "E"}, Marker: "aqua"},
	{Name: "boolq", Kind: Label, Labels: []string{"true", "false"}, Marker: "boolq"},
	{Name: "piqa", Kind: Label, Labels: []string{"solution1", "solution2"}, Marker: "piqa"},
	{Name: "siqa", Kind: Label, Labels: answerN(5), Marker: "social_i_qa"},
	{Name: "arc-e", Kind: Label, Labels: answerN(5), Marker: "arc-easy"},
	{Name: "arc-c", Kind: Label, Labels: answerN(5), Marker: "arc-challenge"},
	{Name: "obqa", Kind: Label, Labels: answerN(5), Marker: "openbookqa"},
	{Name: "hellaswag", Kind: Label, Labels: []string{"ending1", "ending2", "ending3", "ending4"}, Marker: "hellaswag"},
	{Name: "winogrande", Kind: Label, Labels: []string{"option1", "option2"}, Marker: "winogrande"},
}

// aliases are extra names --dataset-type accepts.
var aliases = map[string]string{
	"social_i_qa": "siqa", "arc-easy": "arc-e", "arc_easy": "arc-e", "arc-challenge": "arc-c",
	"arc_challenge": "arc-c", "openbookqa": "obqa", "aqua_rat": "aqua",
}

func answerN(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("answer%d", i))
	}
	return out
}

// TaskNames lists the canonical task names.
func TaskNames() []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.Name)
	}
	return out
}

// LookupTask finds a task by its canonical name or an alias (case-insensitive).
func LookupTask(name string) (Task, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if a, ok := aliases[n]; ok {
		n = a
	}
	for _, t := range tasks {
		if t.Name == n {
			return t, nil
		}
	}
	return Task{}, fmt.Errorf("eval: unknown dataset type %q (known: %s)", name, strings.Join(TaskNames(), ", "))
}

// DetectTask picks the task from a dataset file name, as the reference's file layout names
// them (gsm8k-test.json, ARC-Easy-test.json, social_i_qa-test.json, ...).
func DetectTask(path string) (Task, error) {
	base := strings.ToLower(filepath.Base(path))
	for _, t := range tasks {
		if strings.Contains(base, t.Marker) {
			return t, nil
		}
	}
	return Task{}, fmt.Errorf("eval: cannot tell the task from the file name %q (it names none of gsm8k, SVAMP, mawps, AQuA, boolq, piqa, social_i_qa, ARC-Easy, ARC-Challenge, openbookqa, hellaswag, winogrande); pass --dataset-type", filepath.Base(path))
}

const responseMarker = "### Response:"

// ExtractResponse is the reference's text.split("### Response:")[1].strip(): the text between
// the first marker and the next one, without surrounding whitespace. ok is false when the
// text holds no marker.
func ExtractResponse(text string) (string, bool) {
	_, after, found := strings.Cut(text, responseMarker)
	if !found {
		return "", false
	}
	if i := strings.Index(after, responseMarker); i >= 0 {
		after = after[:i]
	}
	return strings.TrimSpace(after), true
}

var numberRE = regexp.MustCompile(`-?[0-9]+\.?[0-9]*`)

// ParseNumber is the math rule: delete commas, take the last match of -?\d+\.?\d* as a
// float; +Inf when nothing matches. (Python's \d also matches non-ASCII digits; the
// datasets' responses are ASCII.)
func ParseNumber(response string) float64 {
	ms := numberRE.FindAllString(strings.ReplaceAll(response, ",", ""), -1)
	if len(ms) == 0 {
		return math.Inf(1)
	}
	v, err := strconv.ParseFloat(ms[len(ms)-1], 64)
	if err != nil && !isRange(err) {
		return math.Inf(1) // cannot happen for the pattern's matches
	}
	return v // out of range: ±Inf, as Python's float() gives
}

func isRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// firstLabel returns the leftmost occurrence of any label (case-sensitive); at equal
// positions the regex alternation order decides, as Python's re does. "" when none occurs.
func firstLabel(s string, labels []string) string {
	best, bestAt := "", -1
	for _, l := range labels {
		if i := strings.Index(s, l); i >= 0 && (bestAt < 0 || i < bestAt) {
			best, bestAt = l, i
		}
	}
	return best
}

// Parse applies the task's rule to an extracted response and returns the prediction as text:
// a number formatted with strconv 'g' (or "+Inf") for numeric tasks, the matched label, or ""
// when no label occurs.
func (t Task) Parse(response string) string {
	switch t.Kind {
	case Numeric:
		return formatNumber(ParseNumber(response))
	default:
		return firstLabel(strings.TrimSpace(response), t.Labels)
	}
}

func formatNumber(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Correct parses response and compares it with the item's answer: |pred − answer| ≤ 0.001
// for numeric tasks, string equality otherwise. The error reports an answer that is not a
// number in a numeric task.
func (t Task) Correct(response, answer string) (pred string, correct bool, err error) {
	if t.Kind == Numeric {
		want, err := strconv.ParseFloat(strings.TrimSpace(answer), 64)
		if err != nil {
			return "", false, fmt.Errorf("eval: %s answer %q is not a number", t.Name, answer)
		}
		p := ParseNumber(response)
		return formatNumber(p), math.Abs(p-want) <= 0.001, nil
	}
	pred = t.Parse(response)
	return pred, pred == answer, nil
}

// Candidates are the labels a choice evaluation scores for one item: those listed on the
// instruction's "Answer format: a/b/c" line when it names only labels of the task (SIQA has
// three answers, some ARC items three or five), else all the task's labels. Numeric tasks
// have none.
func (t Task) Candidates(instruction string) []string {
	if t.Kind == Numeric {
		return nil
	}
	if i := strings.LastIndex(instruction, "Answer format:"); i >= 0 {
		line := instruction[i+len("Answer format:"):]
		if j := strings.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		var out []string
		ok := true
		for _, f := range strings.Split(line, "/") {
			f = strings.TrimSpace(f)
			if !contains2(t.Labels, f) {
				ok = false
				break
			}
			out = append(out, f)
		}
		if ok && len(out) >= 2 {
			sort.SliceStable(out, func(a, b int) bool { return indexOf(t.Labels, out[a]) < indexOf(t.Labels, out[b]) })
			return out
		}
	}
	return append([]string(nil), t.Labels...)
}

func contains2(xs []string, x string) bool { return indexOf(xs, x) >= 0 }

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}
