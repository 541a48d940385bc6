// Package apidoc keeps the API reference (docs/api.md) and the protos in step: it lists
// every RPC of tokenizer.v1 and its REST bindings from the registered descriptors, and
// checks a reference document against them in both directions.
package apidoc
