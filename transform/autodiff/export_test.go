package autodiff

import "fmt"

// Sabotage replaces op's rule, until restore is called, by one that multiplies every input
// gradient the real rule returns by factor. The harness test uses it to prove a wrong rule (a 1%
// error, a NaN) fails the finite-difference check. It is in a _test.go file, so no build of the
// package can carry it; tests that use it must not run in parallel with other autodiff tests.
func Sabotage(op string, factor float64) (restore func()) {
	orig, ok := registry[op]
	if !ok {
		panic(fmt.Sprintf("autodiff.Sabotage: no rule for %s", op))
	}
	registry[op] = func(c *ctx) ([]string, error) {
		d, err := orig(c)
		if err != nil {
			return d, err
		}
		out := append([]string(nil), d...)
		for k, g := range out {
			if g != "" {
				out[k] = c.emit("Mul", []string{g, c.scalar(c.dt(c.in(k)), factor)})
			}
		}
		return out, nil
	}
	return func() { registry[op] = orig }
}
