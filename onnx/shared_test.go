package onnx_test

import (
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
)

// The in-package tests find the stories260K PyTorch export through this hook (see
// TorchStoriesFixture).
func init() {
	onnx.TorchStoriesFixture = func(t testing.TB) string { return testkit.TorchStories(t).Path }
}
