package client

import (
	"context"
	"fmt"
	"time"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// Value is one identifier to tokenize.
type Value struct {
	// Class names the token class, e.g. "ssn".
	Class string
	// Value is the identifier.
	Value string
	// Scope separates static tokens: the same value in two scopes gets two tokens.
	Scope string
	// Reference is the caller's own name for the item, echoed in its result.
	Reference string
	// Subject is the data subject (patient) the value belongs to, e.g. an MRN; empty for
	// none. A subject's values can be erased together (docs/subjects.md).
	Subject string
}

// Token is one token to reveal.
type Token struct {
	Class     string
	Token     string
	Reference string
}

// TokenizeResult is the outcome of one Value: a token, or Err.
type TokenizeResult struct {
	Reference string
	Token     string
	// ExpireTime is when the token stops detokenizing; zero when it does not expire.
	ExpireTime time.Time
	// Err is the item's own error (an *ItemError); the other items are unaffected.
	Err error
	// SubjectToken is the subject's own token, when the value has a subject and the
	// service configures a subject class.
	SubjectToken string
}

// DetokenizeResult is the outcome of one Token: the value, or Err.
type DetokenizeResult struct {
	Reference string
	Value     string
	// Masked is true when policy revealed only part of the value (***-**-6789).
	Masked bool
	Err    error
}

// ItemError is the error of one item of a batch, as the server reported it. Its
// message names the class or field, never the value.
type ItemError struct {
	Code    codes.Code
	Message string
}

func (e *ItemError) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// GRPCStatus lets status.Code and status.Convert read an ItemError.
func (e *ItemError) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// itemError converts a per-item google.rpc.Status; nil stays nil.
func itemError(s *rpcstatus.Status) error {
	if s == nil {
		return nil
	}
	return &ItemError{Code: codes.Code(s.GetCode()), Message: s.GetMessage()}
}

// TokenizeOption adjusts one Tokenize call.
type TokenizeOption func(*tokenizerv1.TokenizeRequest)

// WithTTL gives every token created by the call this lifetime instead of the class's.
func WithTTL(d time.Duration) TokenizeOption {
	return func(r *tokenizerv1.TokenizeRequest) { r.Ttl = durationpb.New(d) }
}

// RevealOption adjusts one Detokenize call.
type RevealOption func(*tokenizerv1.DetokenizeRequest)

// WithJustification records free text with the reveal (required for break-glass).
func WithJustification(text string) RevealOption {
	return func(r *tokenizerv1.DetokenizeRequest) { r.Justification = text }
}

// Tokenize returns a token for each value, in input order. Values are sent in
// requests of at most the client's MaxItems. A value the server refuses gets its own
// Err; a failed call returns the results of the requests that succeeded before it
// (a prefix of the input) and the error.
func (c *Client) Tokenize(ctx context.Context, values []Value, opts ...TokenizeOption) ([]TokenizeResult, error) {
	return batched(ctx, c, values, func(ctx context.Context, chunk []Value) ([]TokenizeResult, error) {
		req := tokenizeRequest(chunk, opts)
		var resp *tokenizerv1.TokenizeResponse
		err := c.call(ctx, func(ctx context.Context) (err error) {
			resp, err = c.tok.Tokenize(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		return tokenizeResults(resp, len(chunk))
	})
}

// Detokenize reveals the value behind each token, in input order, for purpose. The
// purpose is required: without it (or ETREAT without WithJustification) nothing is
// sent. Results and errors are as for Tokenize.
func (c *Client) Detokenize(ctx context.Context, purpose Purpose, tokens []Token, opts ...RevealOption) ([]DetokenizeResult, error) {
	req, err := detokenizeRequest(purpose, nil, opts)
	if err != nil {
		return nil, err
	}
	return batched(ctx, c, tokens, func(ctx context.Context, chunk []Token) ([]DetokenizeResult, error) {
		r := detokenizeChunk(req, chunk)
		var resp *tokenizerv1.DetokenizeResponse
		err := c.call(ctx, func(ctx context.Context) (err error) {
			resp, err = c.tok.Detokenize(ctx, r)
			return err
		})
		if err != nil {
			return nil, err
		}
		return detokenizeResults(resp, len(chunk))
	})
}

// batched splits items into requests of at most c.maxItems, in order, and joins the
// results. It stops at the first failed request.
func batched[In, Out any](ctx context.Context, c *Client, items []In, send func(context.Context, []In) ([]Out, error)) ([]Out, error) {
	out := make([]Out, 0, len(items))
	for start := 0; start < len(items); start += c.maxItems {
		end := min(start+c.maxItems, len(items))
		res, err := send(ctx, items[start:end])
		if err != nil {
			return out, fmt.Errorf("client: items %d to %d of %d: %w", start, end-1, len(items), err)
		}
		out = append(out, res...)
	}
	return out, nil
}

func tokenizeRequest(values []Value, opts []TokenizeOption) *tokenizerv1.TokenizeRequest {
	req := &tokenizerv1.TokenizeRequest{Items: make([]*tokenizerv1.TokenizeItem, len(values))}
	for i, v := range values {
		req.Items[i] = &tokenizerv1.TokenizeItem{Class: v.Class, Value: v.Value, Scope: v.Scope, Reference: v.Reference, Subject: v.Subject}
	}
	for _, o := range opts {
		o(req)
	}
	return req
}

// detokenizeRequest checks the purpose and builds a request for tokens.
func detokenizeRequest(purpose Purpose, tokens []Token, opts []RevealOption) (*tokenizerv1.DetokenizeRequest, error) {
	if purpose == "" {
		return nil, ErrNoPurpose
	}
	req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: string(purpose)}
	for _, o := range opts {
		o(req)
	}
	if purpose == EmergencyTreatment && req.Justification == "" {
		return nil, ErrNoJustification
	}
	return detokenizeChunk(req, tokens), nil
}

// detokenizeChunk is base (purpose, justification) with tokens as its items.
func detokenizeChunk(base *tokenizerv1.DetokenizeRequest, tokens []Token) *tokenizerv1.DetokenizeRequest {
	req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: base.PurposeOfUse, Justification: base.Justification,
		Items: make([]*tokenizerv1.DetokenizeItem, len(tokens))}
	for i, t := range tokens {
		req.Items[i] = &tokenizerv1.DetokenizeItem{Class: t.Class, Token: t.Token, Reference: t.Reference}
	}
	return req
}

func tokenizeResults(resp *tokenizerv1.TokenizeResponse, want int) ([]TokenizeResult, error) {
	if len(resp.GetResults()) != want {
		return nil, fmt.Errorf("server returned %d results for %d items", len(resp.GetResults()), want)
	}
	out := make([]TokenizeResult, want)
	for i, r := range resp.GetResults() {
		out[i] = TokenizeResult{Reference: r.GetReference(), Token: r.GetToken(), Err: itemError(r.GetError()), SubjectToken: r.GetSubjectToken()}
		if r.GetExpireTime() != nil {
			out[i].ExpireTime = r.GetExpireTime().AsTime()
		}
	}
	return out, nil
}

func detokenizeResults(resp *tokenizerv1.DetokenizeResponse, want int) ([]DetokenizeResult, error) {
	if len(resp.GetResults()) != want {
		return nil, fmt.Errorf("server returned %d results for %d items", len(resp.GetResults()), want)
	}
	out := make([]DetokenizeResult, want)
	for i, r := range resp.GetResults() {
		out[i] = DetokenizeResult{Reference: r.GetReference(), Value: r.GetValue(), Masked: r.GetMasked(),
			Err: itemError(r.GetError())}
	}
	return out, nil
}
