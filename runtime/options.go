package runtime

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Devices are the execution providers Options.Device accepts.
var Devices = []string{"cpu", "cuda", "tensorrt", "webgpu"}

// OptLevels are the graph optimization levels Options.OptLevel accepts ("" means "all").
var OptLevels = []string{"all", "extended", "basic", "disable"}

// ErrProvider is wrapped by errors that come from attaching a GPU execution provider, so a caller
// can fall back to the CPU or print the installation hint.
var ErrProvider = errors.New("execution provider unavailable")

const gpuHint = "the GPU needs a CUDA-enabled onnxruntime with its provider libraries " +
	"(libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so, ...) in the same folder as " +
	"libonnxruntime and the CUDA/cuDNN libraries on LD_LIBRARY_PATH (see README, \"GPU\")"

const webgpuHint = "webgpu needs an onnxruntime built with WebGPU (the onnxruntime-node builds are), " +
	"Vulkan (libvulkan.so.1) and a GPU adapter (see README, \"GPU\")"

// Options configure a session. The zero value is the CPU with onnxruntime's defaults.
type Options struct {
	// Device is the execution provider: "cpu" (or ""), "cuda", "tensorrt" or "webgpu".
	// Ops a GPU provider lacks fall back to the CPU.
	Device string
	// DeviceID selects the GPU for cuda and tensorrt (webgpu takes the adapter Dawn picks).
	DeviceID int
	// Threads is the intra-op thread count; 0 keeps onnxruntime's default (one per core).
	Threads int
	// OptLevel is the graph optimization level: "all" (or ""), "extended", "basic" or "disable".
	OptLevel string
	// Spin lets idle intra-op threads busy-wait for the next parallel section (onnxruntime's
	// default). Off here: on a shared or oversubscribed CPU the spinning threads take the cores
	// the working thread needs; NLS training on 2 busy cores ran about 2× faster with spinning
	// off (bench/RESULTS.md, "PyTorch peer").
	Spin bool
	// Prepack chooses onnxruntime's weight pre-packing (see Prepack). The zero value,
	// PrepackAuto, follows from the model: on when it holds MatMulNBits, off otherwise.
	Prepack Prepack
	// Profile, when not empty, makes onnxruntime write a profile of every run (a Chrome trace:
	// one event per node with its op type and the execution provider that ran it) to
	// Profile + "_<timestamp>.json", finished when the session closes. Empty falls back to
	// $SHEARS_ORT_PROFILE, so a command's sessions can be profiled without a flag: this is how
	// bench/gpu/check.sh finds the nodes a GPU provider left to the CPU.
	Profile string
}

// ProfileEnv names the variable that sets Options.Profile for sessions that leave it empty.
const ProfileEnv = "SHEARS_ORT_PROFILE"

// Validate checks the options without touching onnxruntime.
func (o Options) Validate() error {
	if !contains(Devices, o.device()) {
		return fmt.Errorf("runtime: unknown device %q (allowed: %s)", o.Device, strings.Join(Devices, ", "))
	}
	if o.DeviceID < 0 {
		return fmt.Errorf("runtime: device id %d is negative", o.DeviceID)
	}
	if o.Threads < 0 {
		return fmt.Errorf("runtime: thread count %d is negative", o.Threads)
	}
	if o.OptLevel != "" && !contains(OptLevels, o.OptLevel) {
		return fmt.Errorf("runtime: unknown optimization level %q (allowed: %s)", o.OptLevel, strings.Join(OptLevels, ", "))
	}
	if o.Prepack > PrepackOff {
		return fmt.Errorf("runtime: unknown pre-packing choice %d (allowed: %s)", o.Prepack, strings.Join(PrepackChoices, ", "))
	}
	return nil
}

func (o Options) device() string {
	if o.Device == "" {
		return "cpu"
	}
	return strings.ToLower(o.Device)
}

func (o Options) profile() string {
	if o.Profile != "" {
		return o.Profile
	}
	return os.Getenv(ProfileEnv)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// sessionOptions builds onnxruntime session options from validated Options; the caller destroys
// them. prepack is Options.Prepack resolved against the model (Prepack.resolve). externalDir,
// when not empty, is where external-data locations resolve (for models loaded from bytes).
// Errors carry no "runtime:" prefix: the caller adds the model's name.
func (o Options) sessionOptions(prepack bool, externalDir string) (_ *ort.SessionOptions, err error) {
	if err := requireInit(); err != nil {
		return nil, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %v", err)
	}
	defer func() {
		if err != nil {
			so.Destroy()
		}
	}()
	if o.Threads > 0 {
		if err := so.SetIntraOpNumThreads(o.Threads); err != nil {
			return nil, fmt.Errorf("setting %d intra-op threads: %v", o.Threads, err)
		}
	}
	level := ort.GraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll)
	switch o.OptLevel {
	case "extended":
		level = ort.GraphOptimizationLevelEnableExtended
	case "basic":
		level = ort.GraphOptimizationLevelEnableBasic
	case "disable":
		level = ort.GraphOptimizationLevelDisableAll
	}
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return nil, fmt.Errorf("setting optimization level %q: %v", o.OptLevel, err)
	}
	spin := "0"
	if o.Spin {
		spin = "1"
	}
	if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", spin); err != nil {
		return nil, fmt.Errorf("setting intra-op spinning %s: %v", spin, err)
	}
	if !prepack {
		if err := so.AddSessionConfigEntry(disablePrepacking, "1"); err != nil {
			return nil, fmt.Errorf("disabling pre-packing: %v", err)
		}
	}
	if externalDir != "" {
		if err := so.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", externalDir); err != nil {
			return nil, fmt.Errorf("setting the external-data folder %s: %v", externalDir, err)
		}
	}
	if prefix := o.profile(); prefix != "" {
		if err := so.EnableProfiling(prefix); err != nil {
			return nil, fmt.Errorf("enabling profiling to %s: %v", prefix, err)
		}
	}
	if err := o.appendProvider(so); err != nil {
		return nil, err
	}
	return so, nil
}

// appendProvider attaches the GPU provider. onnxruntime reports a missing provider library here
// (or at session creation), never by crashing, so every failure becomes an ErrProvider.
func (o Options) appendProvider(so *ort.SessionOptions) (err error) {
	dev := o.device()
	defer func() {
		// onnxruntime_go does not panic on these paths today; this keeps a future change from
		// crossing the package boundary as a panic.
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %v", dev, r)
		}
		if err != nil {
			err = o.providerError(err)
		}
	}()
	id := strconv.Itoa(o.DeviceID)
	switch dev {
	case "cuda":
		cu, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer cu.Destroy()
		if err := cu.Update(map[string]string{"device_id": id}); err != nil {
			return err
		}
		return so.AppendExecutionProviderCUDA(cu)
	case "tensorrt":
		trt, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return err
		}
		defer trt.Destroy()
		if err := trt.Update(map[string]string{"device_id": id}); err != nil {
			return err
		}
		return so.AppendExecutionProviderTensorRT(trt)
	case "webgpu":
		return so.AppendExecutionProvider("WebGPU", map[string]string{})
	}
	return nil
}

func (o Options) providerError(err error) error {
	if err == nil || errors.Is(err, ErrProvider) {
		return err
	}
	if o.device() == "webgpu" { // DeviceID does not apply: Dawn picks the adapter
		return fmt.Errorf("%w: webgpu execution provider failed: %v; %s", ErrProvider, oneLine(err.Error()), webgpuHint)
	}
	return fmt.Errorf("%w: %s execution provider (device %d) failed: %v; %s",
		ErrProvider, o.device(), o.DeviceID, oneLine(err.Error()), gpuHint)
}

// oneLine keeps multi-line onnxruntime messages to one line for logs.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
