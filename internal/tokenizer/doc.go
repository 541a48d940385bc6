// Package tokenizer is the engine of the service: token classes (format, mode,
// generator, scope, lifetime), static and dynamic format-preserving tokens (random, or
// FF1 under a class key), batches with per-item results, and the storage interface it
// needs (Store) with its row types. It imports no storage driver, no gRPC and no Vault
// API: internal/store implements Store on PostgreSQL, internal/store/memory in memory.
package tokenizer
