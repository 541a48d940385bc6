// Package client is the Go client library of the tokenizer service (API tokenizer.v1)
// for EHR systems and data pipelines.
//
// It dials with mTLS (certificate files, or a SPIFFE Workload API X.509 source), or in
// plaintext against a development server; it tokenizes and detokenizes any number of
// values, split into requests no larger than the server accepts, with results in input
// order and an error per item; it retries only calls that may succeed when repeated
// (UNAVAILABLE, RESOURCE_EXHAUSTED as RetryInfo says, ABORTED), with exponential
// backoff and jitter; and every reveal takes a purpose of use, checked before anything
// is sent.
package client
