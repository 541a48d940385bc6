package client

import (
	"context"
	"fmt"
	"time"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// Mapping names one mapping to delete: by Token, or for a static class by Value (and
// Scope).
type Mapping struct {
	Class     string
	Token     string
	Value     string
	Scope     string
	Reference string
}

// DeleteResult is the outcome of one Mapping.
type DeleteResult struct {
	Reference string
	// Deleted is true when this item removed the mapping, false (without Err) when
	// there was nothing to remove: an unknown or already deleted token, a value never
	// tokenized, or a mapping an earlier item of the same request removed.
	Deleted bool
	// Err is set only for an item that cannot be processed (bad token or value,
	// unknown class, denied).
	Err error
}

// DeleteTokens deletes mappings, in requests of at most MaxItems; results are in input
// order, as for Tokenize.
func (c *Client) DeleteTokens(ctx context.Context, mappings []Mapping) ([]DeleteResult, error) {
	return batched(ctx, c, mappings, func(ctx context.Context, chunk []Mapping) ([]DeleteResult, error) {
		req := &tokenizerv1.DeleteTokensRequest{Items: make([]*tokenizerv1.DeleteItem, len(chunk))}
		for i, m := range chunk {
			req.Items[i] = &tokenizerv1.DeleteItem{Class: m.Class, Token: m.Token, Value: m.Value, Scope: m.Scope, Reference: m.Reference}
		}
		var resp *tokenizerv1.DeleteTokensResponse
		err := c.call(ctx, func(ctx context.Context) (err error) {
			resp, err = c.tok.DeleteTokens(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(resp.GetResults()) != len(chunk) {
			return nil, fmt.Errorf("server returned %d results for %d items", len(resp.GetResults()), len(chunk))
		}
		out := make([]DeleteResult, len(chunk))
		for i, r := range resp.GetResults() {
			out[i] = DeleteResult{Reference: r.GetReference(), Deleted: r.GetDeleted(), Err: itemError(r.GetError())}
		}
		return out, nil
	})
}

// Class describes one configured token class.
type Class struct {
	Name            string
	Format          string
	Mode            string // static or dynamic
	Generator       string // random or fpe (static classes)
	TTL             time.Duration
	Distinguishable bool
	PreservePrefix  int
	PreserveSuffix  int
}

// ListClasses returns the classes the server serves, sorted by name.
func (c *Client) ListClasses(ctx context.Context) ([]Class, error) {
	var resp *tokenizerv1.ListClassesResponse
	err := c.call(ctx, func(ctx context.Context) (err error) {
		resp, err = c.tok.ListClasses(ctx, &tokenizerv1.ListClassesRequest{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("client: list classes: %w", err)
	}
	out := make([]Class, len(resp.GetClasses()))
	for i, k := range resp.GetClasses() {
		out[i] = Class{Name: k.GetName(), Format: k.GetFormat(), Mode: k.GetMode(), Generator: k.GetGenerator(),
			TTL: k.GetTtl().AsDuration(), Distinguishable: k.GetDistinguishable(),
			PreservePrefix: int(k.GetPreservePrefix()), PreserveSuffix: int(k.GetPreserveSuffix())}
	}
	return out, nil
}
