// Command shears prunes an ONNX transformer language model with Wanda, adds elastic LoRA
// adapters, trains them as a weight-sharing super-network on onnxruntime, searches the best
// sub-adapter and exports deployable ONNX graphs (the Shears method, arXiv 2404.10934).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

// command is one verb of the CLI. Each subcommand file registers itself in init, so the
// dispatcher, the help text and the docs share one registry.
type command struct {
	name string
	args string // usage after the verb, e.g. "MODEL [flags]"
	// positional, when set, names the exact positional arguments ("MODEL.onnx", "FORMAT
	// CHECKPOINT"): the dispatcher checks their count before run, with a usage error.
	positional string
	summary    string // one line for the command list
	long       string // a paragraph that teaches: what it does, typical use
	flags      func(fs *pflag.FlagSet) any
	run        func(env *cliEnv, opts any, args []string) error
}

var registry = map[string]*command{}

func register(c *command) { registry[c.name] = c }

// cliEnv is what a command may touch of the outside world.
type cliEnv struct {
	stdout, stderr io.Writer
	argv           []string // the command line after "shears", for model cards
}

// errUsage marks errors where the right reaction is to show the command's usage.
var errUsage = pipeline.ErrUsage

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(argv []string, stdout, stderr io.Writer) int {
	if len(argv) == 0 || argv[0] == "-h" || argv[0] == "--help" || argv[0] == "help" {
		if len(argv) > 1 {
			if c, ok := registry[argv[1]]; ok {
				usage(c, stdout)
				return 0
			}
		}
		overview(stdout)
		return 0
	}
	c, ok := registry[argv[0]]
	if !ok {
		fmt.Fprintf(stderr, "shears: unknown command %q (run \"shears --help\" for the list)\n", argv[0])
		return 2
	}
	fs := pflag.NewFlagSet("shears "+c.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	opts := c.flags(fs)
	if err := fs.Parse(argv[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			usage(c, stdout)
			return 0
		}
		fmt.Fprintf(stderr, "shears %s: %v\n(run \"shears %s --help\")\n", c.name, err, c.name)
		return 2
	}
	env := &cliEnv{stdout: stdout, stderr: stderr, argv: argv}
	pipeline.SetCommandLine(commandLine(argv))
	err := c.checkArgs(fs.Args())
	if err == nil {
		err = c.run(env, opts, fs.Args())
	}
	if err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "shears %s: %v\n", c.name, err)
			usage(c, stderr)
			return 2
		}
		fmt.Fprintf(stderr, "shears %s: %v\n", c.name, err)
		return 1
	}
	return 0
}

// commandOrder is the one ordered list of the CLI's verbs: the Shears workflow, as the
// overview lists them. Every registered command is in it (TestCommandOrderListsEveryCommand).
var commandOrder = []string{"run", "import", "inspect", "convert", "prune", "quantize", "adapt", "train", "search", "export", "eval", "generate", "gradcheck", "bench"}

func overview(w io.Writer) {
	fmt.Fprint(w, `shears: sparse base + elastic low-rank adapters for ONNX language models (Shears, arXiv 2404.10934)

Usage: shears COMMAND [ARGS] [FLAGS]

The workflow: prune the base (Wanda), optionally quantize it (int4/int8), adapt (elastic LoRA),
train (NLS), search a sub-adapter, export (sparse base + adapter, or merged), eval.
"shears run RECIPE" runs it all.

Commands:
`)
	for _, n := range commandOrder {
		if registry[n] == nil {
			continue
		}
		fmt.Fprintf(w, "  %-10s %s\n", n, registry[n].summary)
	}
	fmt.Fprint(w, `
Run "shears COMMAND --help" for a command's flags and examples.
onnxruntime is found through --ort-lib, $ONNXRUNTIME_LIB or .ort/ ("make ort" fetches it).
`)
}

func usage(c *command, w io.Writer) {
	fmt.Fprintf(w, "Usage: shears %s %s\n\n%s\n\n%s\n", c.name, c.args, c.summary, strings.TrimSpace(c.long))
	fs := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	fs.SortFlags = false
	c.flags(fs)
	if fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
}

// checkArgs checks the positional argument count the command declares (none declared: any).
func (c *command) checkArgs(args []string) error {
	if c.positional == "" {
		return nil
	}
	return needArgs(args, len(strings.Fields(c.positional)), c.positional)
}

// needArgs checks the positional argument count.
func needArgs(args []string, n int, what string) error {
	if len(args) != n {
		return fmt.Errorf("%w: expected %s, got %d argument(s)", errUsage, what, len(args))
	}
	return nil
}
