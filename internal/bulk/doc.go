// Package bulk tokenizes and detokenizes files through the running service: record
// formats (CSV/TSV, NDJSON) that locate the mapped values inside each raw record and
// splice the results back without touching any other byte, gzip/zstd by extension, a
// pipeline of bounded in-flight batches whose output keeps input order, a reject file,
// checkpoints for --resume, and progress reporting.
//
// A new record format (for example FHIR NDJSON driven by a profile) plugs in by
// implementing Format and adding it to the formats map in format.go.
package bulk
