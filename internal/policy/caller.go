// Package policy decides who the caller is and what it may do: identities, permissions
// per class and operation, purposes of use.
package policy

import "context"

// Caller is an authenticated client.
type Caller struct {
	// ID is the caller's identity (a SPIFFE ID, a certificate CN, or "dev").
	ID string
	// Address is the client's network address as seen by the service.
	Address string
}

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller in ctx.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// DevIdentity is the identity every caller gets in insecure (plaintext) mode.
const DevIdentity = "dev"

type principalKey struct{}

// WithPrincipal returns ctx carrying the caller's policy entry (nil: no entry).
func WithPrincipal(ctx context.Context, pr *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, pr)
}

// PrincipalFrom returns the caller's policy entry in ctx (nil: no entry, denied).
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
