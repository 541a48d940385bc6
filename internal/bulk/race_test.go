//go:build race

package bulk_test

// Under the race detector the client binary is built with it too, so the pipeline's
// goroutines are checked in the end-to-end tests.
func init() { buildFlags = append(buildFlags, "-race") }
