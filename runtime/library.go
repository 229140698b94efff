package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ErrNoLibrary is wrapped by every error FindLibrary returns, so callers can tell "not installed"
// apart from "installed but broken" with errors.Is.
var ErrNoLibrary = errors.New("onnxruntime library not found")

// EnvLibrary is the environment variable FindLibrary consults after the flag.
const EnvLibrary = "ONNXRUNTIME_LIB"

// ProjectLibrary is where "make ort" puts the library, relative to the repository root.
const ProjectLibrary = ".ort/libonnxruntime.so.1"

const noLibraryHint = `run "make ort" or pass --ort-lib PATH`

// FindLibrary returns the absolute path of the onnxruntime shared library. The order is: flagPath
// (the --ort-lib flag), then $ONNXRUNTIME_LIB, then .ort/libonnxruntime.so.1 in the folder of the
// running executable or one of its parents, then in the working directory or one of its parents.
// An explicit flag or variable that names a missing file is reported as such rather than skipped,
// because silently using another library hides the mistake.
func FindLibrary(flagPath string) (string, error) {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dirs = append(dirs, filepath.Dir(exe))
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	return findLibrary(flagPath, os.Getenv(EnvLibrary), dirs)
}

// findLibrary is FindLibrary with its inputs explicit, so tests do not depend on the process.
func findLibrary(flagPath, envPath string, startDirs []string) (string, error) {
	if flagPath != "" {
		return existingFile(flagPath, "--ort-lib")
	}
	if envPath != "" {
		return existingFile(envPath, "$"+EnvLibrary)
	}
	for _, start := range startDirs {
		dir := start
		for {
			p := filepath.Join(dir, ProjectLibrary)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				return filepath.Abs(p)
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("%w (tried --ort-lib, $%s, %s near the executable and the working directory): %s",
		ErrNoLibrary, EnvLibrary, ProjectLibrary, noLibraryHint)
}

func existingFile(p, from string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		why := "no such file"
		if err == nil {
			why = "not a regular file"
		}
		return "", fmt.Errorf("%w (tried %s=%s: %s): %s", ErrNoLibrary, from, p, why, noLibraryHint)
	}
	return filepath.Abs(p)
}

// The onnxruntime environment is process-global (one OrtEnv, one dlopen), so Init runs once and
// remembers its outcome.
var env struct {
	mu      sync.Mutex
	done    bool
	libPath string
	err     error
}

// Init loads the onnxruntime library at libPath and creates the process-wide environment, logging
// at warning level and above. An empty libPath means FindLibrary(""). It is safe to call from
// several goroutines and more than once: the first call does the work and every call returns its
// result. A later call naming a different library is an error, because a process holds one.
func Init(libPath string) error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.done {
		if env.err == nil && libPath != "" {
			if abs, err := filepath.Abs(libPath); err == nil && abs != env.libPath {
				return fmt.Errorf("runtime: onnxruntime already initialized with %s, cannot switch to %s", env.libPath, abs)
			}
		}
		return env.err
	}
	env.done = true
	env.err = initOnce(libPath)
	return env.err
}

func initOnce(libPath string) error {
	if libPath == "" {
		p, err := FindLibrary("")
		if err != nil {
			return err
		}
		libPath = p
	}
	abs, err := filepath.Abs(libPath)
	if err != nil {
		return fmt.Errorf("runtime: onnxruntime library path %s: %w", libPath, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("%w (tried %s: no such file): %s", ErrNoLibrary, abs, noLibraryHint)
	}
	env.libPath = abs
	ort.SetSharedLibraryPath(abs)
	if err := ort.InitializeEnvironment(ort.WithLogLevelWarning()); err != nil {
		return fmt.Errorf("runtime: loading onnxruntime from %s (needs onnxruntime >= 1.24): %v", abs, err)
	}
	return nil
}

// Version is the loaded onnxruntime's version, or "" before a successful Init.
func Version() string {
	if !initialized() {
		return ""
	}
	return ort.GetVersion()
}

// LibraryPath is the library Init loaded, or "" before a successful Init.
func LibraryPath() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.err != nil {
		return ""
	}
	return env.libPath
}

func initialized() bool {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.done && env.err == nil
}

func requireInit() error {
	if !initialized() {
		return errors.New("onnxruntime not initialized: call runtime.Init first")
	}
	return nil
}
