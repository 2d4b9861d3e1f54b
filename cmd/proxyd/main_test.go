package main

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if runProxydProcess() { // a child of startProxydProcess: proxyd, not tests
		return
	}
	goleak.VerifyTestMain(m)
}
