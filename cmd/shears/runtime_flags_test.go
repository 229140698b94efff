package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestPrepackFlag: --prepack reads auto, on and off; alone it means on and =false off (as
// generate's boolean did); the default is auto unless the command set one before add (generate:
// on); anything else is a usage error naming the flag.
func TestPrepackFlag(t *testing.T) {
	for _, c := range []struct {
		def  string
		args []string
		want string
	}{
		{"", nil, ""}, {"on", nil, "on"}, {"", []string{"--prepack"}, "on"}, {"on", []string{"--prepack=false"}, "off"},
		{"", []string{"--prepack=off"}, "off"}, {"on", []string{"--prepack=auto"}, "auto"}, {"", []string{"--prepack=true"}, "on"},
	} {
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		r := &runtimeFlags{}
		r.cfg.Prepack = c.def
		r.add(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if r.cfg.Prepack != c.want {
			t.Errorf("default %q, %v: %q, want %q", c.def, c.args, r.cfg.Prepack, c.want)
		}
		shown := c.def
		if shown == "" {
			shown = "auto"
		}
		if dv := fs.Lookup("prepack").DefValue; dv != shown {
			t.Errorf("default %q shown as %q in --help, want %q", c.def, dv, shown)
		}
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	(&runtimeFlags{}).add(fs)
	if err := fs.Parse([]string{"--prepack=sometimes"}); err == nil || !strings.Contains(err.Error(), `"--prepack"`) || !strings.Contains(err.Error(), "auto, on, off") {
		t.Errorf("--prepack=sometimes: %v", err)
	}
}
