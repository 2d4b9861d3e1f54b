package tracing

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them (the
// batch processor, the exporters' connections).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
