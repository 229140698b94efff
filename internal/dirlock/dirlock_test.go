package dirlock

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestAcquireRefusesASecondHolderAndNamesIt(t *testing.T) {
	dir := t.TempDir()
	a, err := Acquire(dir, "shears train")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, "shears train")
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())+": shears train") {
		t.Fatalf("second acquire: %v", err)
	}
	a.Release()
	a.Release()
	b, err := Acquire(dir, "again")
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	b.Release()
}
