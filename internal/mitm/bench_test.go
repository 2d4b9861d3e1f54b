package mitm

import (
	"strconv"
	"testing"
)

// BenchmarkIssue measures one leaf issuance: a new host every iteration.
func BenchmarkIssue(b *testing.B) {
	a := newTestAuthority(b, 1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := a.Certificate("h" + strconv.Itoa(i) + ".example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheHit measures serving a cached leaf.
func BenchmarkCacheHit(b *testing.B) {
	a := newTestAuthority(b, 1000)
	if _, err := a.Certificate("api.example.com"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Certificate("api.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}
