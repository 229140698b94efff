package main

import "encoding/json"

// printJSON is every verb's --json output: v as indented JSON on stdout, one document per run,
// so scripts read any verb's report the same way.
func printJSON(env *cliEnv, v any) error {
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
