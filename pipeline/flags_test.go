package pipeline

import (
	"errors"
	"strings"
	"testing"
)

// The CLI's flag checks: good values pass; bad ones say which flag, usage errors marked.
func TestCheckConvertAndPruneFlags(t *testing.T) {
	if err := CheckConvertFlags("fp16", "fp32"); err != nil {
		t.Errorf("fp16/fp32: %v", err)
	}
	if err := CheckConvertFlags("int3", "fp32"); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--dtype") {
		t.Errorf("bad dtype: %v", err)
	}
	if err := CheckConvertFlags("fp16", "fp64"); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), `--compute "fp64"`) {
		t.Errorf("bad compute: %v", err)
	}
	if err := CheckPruneFlags(MethodWanda, "2:4", "calib.txt"); err != nil {
		t.Errorf("wanda 2:4: %v", err)
	}
	if err := CheckPruneFlags("magnitude", "5:4", ""); err == nil || !strings.Contains(err.Error(), "--pattern") {
		t.Errorf("bad pattern: %v", err)
	}
	if err := CheckPruneFlags(MethodWanda, "", ""); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--calib") {
		t.Errorf("wanda without calib: %v", err)
	}
}
