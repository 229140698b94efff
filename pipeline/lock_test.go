package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/dirlock"
)

// Issue 14 case 7: a second "shears run" on a work directory a live process holds is refused,
// naming the holder's pid, before it loads anything; and a stage directory that a live train
// holds is never deleted (a changed recipe used to delete the live run under the first).
func TestRunRefusesALiveWorkDirectory(t *testing.T) {
	work := t.TempDir()
	held, err := dirlock.Acquire(work, "shears run")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	keep := filepath.Join(work, "train-abc")
	if err := os.MkdirAll(keep, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Run(&Recipe{Work: work, Tokenizer: "no-such-tokenizer"}, Options{})
	if !errors.Is(err, dirlock.ErrBusy) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("run on a held work directory: %v", err)
	}
	trainLock, err := dirlock.Acquire(keep, "shears train")
	if err != nil {
		t.Fatal(err)
	}
	if err := dirlock.RemoveAll(keep); !errors.Is(err, dirlock.ErrBusy) {
		t.Fatalf("removing a held run directory: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("the held run directory is gone: %v", err)
	}
	trainLock.Release()
	if err := dirlock.RemoveAll(keep); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keep); !os.IsNotExist(err) {
		t.Fatalf("a released directory was not removed: %v", err)
	}
}
