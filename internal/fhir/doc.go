// Package fhir de-identifies and re-identifies FHIR R4 resources field by field: profiles
// of FHIRPath-subset rules (tokenize, dateshift, redact, keep, mask, generalize), the
// Safe Harbor and Limited Data Set presets, referential integrity of ids and references,
// per-patient date shifting and meta.security marking. It is a domain package: it declares
// the token service (Tokenizer) and the offset store (Offsets) it needs and imports no
// transport, storage driver or key provider. See docs/fhir.md.
package fhir
