package eval

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestExtractResponse(t *testing.T) {
	for _, c := range []struct {
		text, want string
		ok         bool
	}{
		{"Below ...\n### Instruction:\nq\n\n### Response:\n      The answer is 5.\n", "The answer is 5.", true},
		// A second marker emitted by the model truncates the answer.
		{"p ### Response:  first \n### Response: second", "first", true},
		{"p ### Response:", "", true},
		{"no marker here", "", false},
		// Only the first marker opens the response, even when the instruction had none.
		{"### Response:### Response:x", "", true},
	} {
		got, ok := ExtractResponse(c.text)
		if got != c.want || ok != c.ok {
			t.Errorf("ExtractResponse(%q) = %q, %v; want %q, %v", c.text, got, ok, c.want, c.ok)
		}
	}
	if got := ExtractResponseOf("  42 \n### Response: 7"); got != "42" {
		t.Errorf("ExtractResponseOf = %q, want 42", got)
	}
}

func TestParseNumber(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
	}{
		{"The answer is 1,234.5 dollars", 1234.5},            // commas deleted first
		{"3 apples and 4 pears, so 7", 7},                    // the last match
		{"It costs -12 degrees", -12},                        // sign
		{"value 5. end", 5},                                  // "5." is a float
		{"x-3", -3},                                          // a hyphen before a digit is a sign
		{"1.2.3", 3},                                         // matches "1.2" and "3"
		{"no digits at all", math.Inf(1)},                    // none → +Inf
		{"", math.Inf(1)},                                    //
		{"The answer is 18.\n\nA: 18 + 2 = 20", 20},          // rationale after the answer wins
		{"1,000,000", 1000000},                               //
		{"ratio 3/4", 4},                                     // fractions are two numbers
		{"e.g. 2.50$", 2.5},                                  //
		{"1" + strings.Repeat("0", 400), math.Inf(1)},        // out of range → Inf, as Python's float()
		{"-" + "1" + strings.Repeat("0", 400), math.Inf(-1)}, //
		{"answer: .5", 5},                                    // a leading dot is not part of the match
		{"minus - 4", 4},                                     // a detached minus is not a sign
		{"0.001 apart", 0.001},                               //
		{"He has 3 apples\nThe answer is 3.0000", 3},         //
		{"２", math.Inf(1)},                                   // full-width digits do not match (ASCII \d)
		{"-0", 0},                                            //
		{"12-3", -3},                                         // "12", then "-3"
		{"5,", 5},                                            //
		{"3.14159 and 2.", 2},                                //
		{"version 1.2.3", 3},                                 //
		{"007", 7},                                           //
		{"The answer is 42!", 42},                            //
		{"Ans: 1e5", 5},                                      // no exponents
		{"values 10 20 30", 30},                              //
		{"A: 20", 20},                                        //
		{"7 ", 7},                                            //
		{"\n-\n", math.Inf(1)},                               //
		{"-.5", 5},                                           //
		{"1.5.", 1.5},                                        // "1.5", then nothing
	} {
		got := ParseNumber(c.in)
		if got != c.want {
			t.Errorf("ParseNumber(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestCorrectNumeric(t *testing.T) {
	gsm, _ := LookupTask("gsm8k")
	for _, c := range []struct {
		resp, answer, pred string
		ok                 bool
	}{
		{"so 576 tiles", "576.0", "576", true},
		{"about 1.8334", "1.8333333333333335", "1.8334", true}, // within 0.001
		{"about 1.835", "1.8333333333333335", "1.835", false},  // 0.0017 off
		{"1,000 and then 999", "999", "999", true},             // last number
		{"The answer is 5.\nA: 6", "5", "6", false},            // a trailing rationale spoils it
		{"no idea", "3", "+Inf", false},                        //
		{"-2", "-2.0", "-2", true},                             //
		{"it is 0.0005", "0", "0.0005", true},                  //
	} {
		pred, ok, err := gsm.Correct(c.resp, c.answer)
		if err != nil || pred != c.pred || ok != c.ok {
			t.Errorf("gsm8k Correct(%q, %q) = %q, %v, %v; want %q, %v", c.resp, c.answer, pred, ok, err, c.pred, c.ok)
		}
	}
	if _, _, err := gsm.Correct("5", "five"); err == nil || !strings.Contains(err.Error(), `"five" is not a number`) {
		t.Errorf("non-numeric answer: err = %v", err)
	}
}

func TestParseLabels(t *testing.T) {
	for _, c := range []struct {
		task, resp, want string
	}{
		// AQuA: the first capital A–E anywhere, the quirk reproduced.
		{"aqua", "The answer is C", "C"},                // "The" has no A–E capital; "C" does
		{"aqua", "Each box holds 4, so (B)", "E"},       // "Each" matches first
		{"aqua", "Bob has (D)", "B"},                    // "Bob" matches first
		{"aqua", "A: 5 apples. The answer is (C)", "A"}, // the math rationales' "A:" prefix
		{"aqua", "the answer is c", ""},                 // case-sensitive
		{"aqua", "   \n D", "D"},                        // stripped
		{"aqua", "xyz", ""},                             //
		{"boolq", "the correct answer is true", "true"}, //
		{"boolq", "false, not true", "false"},           // leftmost
		{"boolq", "True", ""},                           // case-sensitive
		{"boolq", "untrue", "true"},                     // inside a word still matches
		{"piqa", "solution2 is better than solution1", "solution2"},
		{"piqa", "Solution1", ""},
		{"siqa", "the correct answer is answer3", "answer3"},
		{"arc-e", "answer5", "answer5"},
		{"arc-c", "answer6 or answer4", "answer4"}, // answer6 is no label
		{"obqa", "answer", ""},
		{"hellaswag", "ending4 then ending1", "ending4"},
		{"hellaswag", "ending5", ""},
		{"winogrande", "option2", "option2"},
		{"winogrande", "Option1 option3 option1", "option1"},
	} {
		task, err := LookupTask(c.task)
		if err != nil {
			t.Fatal(err)
		}
		if got := task.Parse(c.resp); got != c.want {
			t.Errorf("%s Parse(%q) = %q, want %q", c.task, c.resp, got, c.want)
		}
		pred, ok, err := task.Correct(c.resp, c.want)
		if err != nil || pred != c.want || !ok {
			t.Errorf("%s Correct(%q, %q) = %q, %v, %v", c.task, c.resp, c.want, pred, ok, err)
		}
	}
}

func TestDetectTask(t *testing.T) {
	for file, want := range map[string]string{
		"/x/gsm8k-test.json": "gsm8k", "SVAMP-test.json": "svamp", "mawps-test.json": "mawps",
		"AQuA-test.json": "aqua", "boolq-test.json": "boolq", "piqa-test.json": "piqa",
		"social_i_qa-test.json": "siqa", "ARC-Easy-test.json": "arc-e", "ARC-Challenge-test.json": "arc-c",
		"openbookqa-test.json": "obqa", "hellaswag-test.json": "hellaswag", "winogrande-test.json": "winogrande",
	} {
		got, err := DetectTask(file)
		if err != nil || got.Name != want {
			t.Errorf("DetectTask(%q) = %q, %v; want %q", file, got.Name, err, want)
		}
	}
	if _, err := DetectTask("/data/math_data.json"); err == nil || !strings.Contains(err.Error(), "math_data.json") || !strings.Contains(err.Error(), "--dataset-type") {
		t.Errorf("undetectable file: err = %v", err)
	}
	for name, want := range map[string]string{"ARC-Easy": "arc-e", "social_i_qa": "siqa", "OBQA": "obqa", " gsm8k ": "gsm8k"} {
		if got, err := LookupTask(name); err != nil || got.Name != want {
			t.Errorf("LookupTask(%q) = %q, %v; want %q", name, got.Name, err, want)
		}
	}
	if _, err := LookupTask("squad"); err == nil || !strings.Contains(err.Error(), `"squad"`) {
		t.Errorf("unknown type: err = %v", err)
	}
	aqua, _ := LookupTask("aqua")
	boolq, _ := LookupTask("boolq")
	if !aqua.Math || boolq.Math || aqua.MaxNew() != 256 || boolq.MaxNew() != 32 {
		t.Errorf("math flags: aqua %v/%d, boolq %v/%d", aqua.Math, aqua.MaxNew(), boolq.Math, boolq.MaxNew())
	}
	// The prompts differ only in the indent: 28 spaces for math, 24 for commonsense.
	it := Item{Instruction: "Q?"}
	if p := aqua.Prompt(it); !strings.HasSuffix(p, "### Response:\n"+strings.Repeat(" ", 28)) {
		t.Errorf("math prompt ends %q", p[len(p)-40:])
	}
	if p := boolq.Prompt(it); !strings.HasSuffix(p, "### Response:\n"+strings.Repeat(" ", 24)) || strings.Contains(p, strings.Repeat(" ", 25)) {
		t.Errorf("commonsense prompt ends %q", p[len(p)-40:])
	}
}

func TestCandidates(t *testing.T) {
	siqa, _ := LookupTask("siqa")
	arc, _ := LookupTask("arc-e")
	boolq, _ := LookupTask("boolq")
	gsm, _ := LookupTask("gsm8k")
	for _, c := range []struct {
		task  Task
		instr string
		want  []string
	}{
		{siqa, "Q\n\nAnswer1: x Answer2: y Answer3: z\n\nAnswer format: answer1/answer2/answer3", []string{"answer1", "answer2", "answer3"}},
		{arc, "Q Answer format: answer1/answer2/answer3/answer4/answer5", answerN(5)},
		{arc, "Q (no format line)", answerN(5)},
		{arc, "Answer format: answer1/bogus", answerN(5)}, // a line naming non-labels is ignored
		{boolq, "Answer format: true/false", []string{"true", "false"}},
		{gsm, "Answer format: 1/2", nil},
	} {
		if got := c.task.Candidates(c.instr); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s Candidates(%q) = %v, want %v", c.task.Name, c.instr, got, c.want)
		}
	}
}
