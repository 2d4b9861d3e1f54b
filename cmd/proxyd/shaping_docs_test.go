package main

import (
	"fmt"
	"testing"
)

// TestShapingDocExamplesLoad: every YAML example of docs/shaping.md (the
// worked examples per provider included) is a configuration proxyd
// accepts, and its relative links resolve.
func TestShapingDocExamplesLoad(t *testing.T) {
	doc := readRepoFile(t, "docs/shaping.md")
	blocks := codeBlocks(doc, "yaml")
	if len(blocks) < 6 {
		t.Fatalf("shaping.md has %d YAML examples, want the rules, the payments example and one per provider", len(blocks))
	}
	for i, b := range blocks {
		if _, err := load(fmt.Sprintf("shaping.md YAML example %d", i+1), []byte(b), nil, nil); err != nil {
			t.Errorf("%v\n%s", err, b)
		}
	}
	checkLinks(t, "docs/shaping.md")
	checkLinks(t, "docs/metrics.md")
}
