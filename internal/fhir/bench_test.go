package fhir

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Benchmarks of the core alone: NDJSON through DeidentifyNDJSON with the Limited Data Set
// profile and the in-memory token double (no engine, store, audit or network), reported
// as resources/s. Run: go test -run '^$' -bench . -benchmem ./internal/fhir/
func benchmarkNDJSON(b *testing.B, resourceIndex int) {
	bundle, _ := testBundle(&testing.T{})
	res := resources(&testing.T{}, bundle)[resourceIndex]
	line := string(mustJSON(b, res))
	const perOp = 1000
	in := []byte(strings.Repeat(line+"\n", perOp))
	p, _, _ := newTestProcessor(b, preset(b, PresetLimitedDataSet))
	var out bytes.Buffer
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for b.Loop() {
		out.Reset()
		rep, err := p.DeidentifyNDJSON(context.Background(), bytes.NewReader(in), &out)
		if err != nil || rep.Resources != perOp {
			b.Fatalf("resources %d, err %v", rep.Resources, err)
		}
	}
	b.ReportMetric(float64(perOp*b.N)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkDeidentifyPatient: a Synthea-sized Patient (names, identifiers, telecom,
// address, contact, extensions).
func BenchmarkDeidentifyPatient(b *testing.B) { benchmarkNDJSON(b, 11) }

// BenchmarkDeidentifyObservation: a blood-pressure Observation with two components.
func BenchmarkDeidentifyObservation(b *testing.B) { benchmarkNDJSON(b, 13) }
