package fhir

import "context"

// maxScopeEntries bounds what a stream scope remembers: one short string per Patient
// entry with a fullUrl. Beyond it, later references to new patients' urn:uuid fullUrls
// are not resolved, and what needs their subject (a date shift) fails their resource.
const maxScopeEntries = 1 << 20

type scopeKey struct{}

// scope is what Bundles processed in one stream share: the Patient entries' fullUrls
// and their subjects, so that an entry in a later message (a later part of one large
// Bundle sent in parts) that names a Patient by urn:uuid gets that patient's tokens
// and date shift. A stream's messages are processed one at a time.
type scope struct{ rs resolver }

// WithStreamScope returns ctx carrying a new scope: Bundles processed with it (or a
// context derived from it) resolve urn:uuid references to Patient entries of earlier
// Bundles too, as if they were one Bundle sent in parts.
func WithStreamScope(ctx context.Context) context.Context {
	return context.WithValue(ctx, scopeKey{}, &scope{rs: resolver{}})
}

// bundleResolver is the resolver a Bundle starts with: the stream's, or a new one.
func bundleResolver(ctx context.Context) resolver {
	if s, ok := ctx.Value(scopeKey{}).(*scope); ok {
		return s.rs
	}
	return resolver{}
}

// remember records a Patient entry's fullUrl, within maxScopeEntries.
func (r resolver) remember(fullURL, subject string) {
	if _, ok := r[fullURL]; ok || len(r) < maxScopeEntries {
		r[fullURL] = subject
	}
}
