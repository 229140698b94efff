package pipeline

import (
	"errors"
	"fmt"
)

// ErrUsage marks errors whose right reaction is to show the command's usage (a flag that does
// not apply, a missing one); the CLI tests for it with errors.Is. A stage's Options.Check
// returns them, naming the flag, so the CLI and library callers get the same message.
var ErrUsage = errors.New("usage")

// usageIf is a usage error saying msg when bad holds, else nil.
func usageIf(bad bool, msg string) error {
	if !bad {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrUsage, msg)
}

// atLeast is the usage error of a flag below its minimum ("--beams must be >= 1, got 0").
func atLeast(flag string, v, min int) error {
	return usageIf(v < min, fmt.Sprintf("%s must be >= %d, got %d", flag, min, v))
}

// firstErr is the first non-nil error, in the order a check lists them.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// flagErr prefixes err with the flag whose value it is about (nil stays nil).
func flagErr(flag string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	return nil
}
