// Package fpe compares tokenizer's FF1 with github.com/capitalone/fpe on the same inputs.
// It is a separate module so that the comparison stays out of the service's dependencies.
package fpe
