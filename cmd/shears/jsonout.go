package main

import (
	"fmt"

	"github.com/shears-ml/shears/pipeline"
)

// printJSON is every verb's --json output: v as pipeline.MarshalJSON writes it, on stdout, one
// document per run, so scripts read any verb's report the same way. NaN and Inf values (a
// diverged model's loss) are written as null, and stderr says so.
func printJSON(env *cliEnv, v any) error {
	b, nonFinite, err := pipeline.MarshalJSON(v)
	if err != nil {
		return err
	}
	if nonFinite {
		fmt.Fprintln(env.stderr, "shears: note: NaN or Inf values are written as null in the JSON output")
	}
	_, err = env.stdout.Write(b)
	return err
}

// renderReport ends a stage that writes a model: the report as a JSON file when --report names
// one, then either the report as JSON on stdout (--json) or the text summary.
func renderReport(env *cliEnv, rep any, reportPath string, asJSON bool, summary func()) error {
	if reportPath != "" {
		if err := pipeline.WriteJSON(reportPath, rep); err != nil {
			return err
		}
	}
	if asJSON {
		return printJSON(env, rep)
	}
	summary()
	return nil
}
