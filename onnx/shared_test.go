package onnx_test

import (
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
)

// The in-package tests find ../shared inputs through this hook (see SharedFixture).
func init() { onnx.SharedFixture = testkit.Shared }
