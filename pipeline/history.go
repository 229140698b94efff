package pipeline

import (
	"encoding/json"
	"sync"

	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

var (
	commandMu   sync.Mutex
	commandLine string
)

// SetCommandLine records the command being run ("shears prune …"); every model a stage
// writes appends it to its history (deploy.HistoryKey), so a model card can list the commands
// that made the model. The CLI sets it once per process; library callers may leave it empty.
func SetCommandLine(s string) {
	commandMu.Lock()
	commandLine = s
	commandMu.Unlock()
}

// currentCommand is the command SetCommandLine recorded ("" when none).
func currentCommand() string {
	commandMu.Lock()
	defer commandMu.Unlock()
	return commandLine
}

// recordHistory appends the current command to m's history metadata (nothing when unset or
// when it is already the last entry).
func recordHistory(m *onnx.Model) {
	cmd := currentCommand()
	if cmd == "" || m == nil || m.Proto == nil {
		return
	}
	hist := deploy.ReadHistory(m)
	if len(hist) > 0 && hist[len(hist)-1] == cmd {
		return
	}
	b, err := json.Marshal(append(hist, cmd))
	if err != nil {
		return
	}
	props := m.Proto.MetadataProps[:0:0]
	for _, p := range m.Proto.MetadataProps {
		if p.GetKey() != deploy.HistoryKey {
			props = append(props, p)
		}
	}
	m.Proto.MetadataProps = append(props, &onnxpb.StringStringEntryProto{Key: proto.String(deploy.HistoryKey), Value: proto.String(string(b))})
}
