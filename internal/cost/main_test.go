package cost

import (
	"testing"

	"go.uber.org/goleak"
)

// No decoder goroutine (Inflater) outlives its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
