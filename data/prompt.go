package data

import "strings"

// The reference prompt templates, character for character ([R] run_math.py / run_commonsense.py).
// The odd whitespace comes from code indentation inside Python triple-quoted strings.
const (
	trainTemplateNoInput = "Below is an instruction that describes a task. Write a response that appropriately completes the request.  \n\n                    ### Instruction:\n                    {instruction}\n\n                    ### Response:\n                    {output}"
	trainTemplateInput   = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request. \n\n                    ### Instruction:\n                    {instruction}\n\n                    ### Input:\n                    {input}\n\n                    ### Response:\n                    {output}"
	evalTemplateMath     = "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n\n                            ### Instruction:\n                            {instruction}\n\n                            ### Response:\n                            "
)

// Example is one LLM-Adapters record.
type Example struct {
	Instruction string `json:"instruction"`
	Input       string `json:"input"`
	Output      string `json:"output"`
	Answer      string `json:"answer"`
}

// TrainPrompt fills the training template with the example's output (the reference's
// generate_prompt(data_point)).
func TrainPrompt(e Example) string {
	t := trainTemplateNoInput
	if e.Input != "" {
		t = trainTemplateInput
	}
	return fill(t, e.Instruction, e.Input, e.Output)
}

// EvalPrompt is the math evaluation prompt (one space after "request.", 28-space indent,
// ending with the indent after "### Response:\n"). Commonsense uses the same text with a
// 24-space indent.
func EvalPrompt(instruction string, commonsense bool) string {
	t := evalTemplateMath
	if commonsense {
		t = strings.ReplaceAll(t, strings.Repeat(" ", 28), strings.Repeat(" ", 24))
	}
	return fill(t, instruction, "", "")
}

func fill(t, instruction, input, output string) string {
	return strings.NewReplacer("{instruction}", instruction, "{input}", input, "{output}", output).Replace(t)
}
