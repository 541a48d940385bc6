package bulk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// retryable codes are retried with backoff: the service is briefly unable, not wrong
// (a retried batch is harmless: static classes give the same tokens again).
var retryable = map[codes.Code]bool{codes.Unavailable: true, codes.ResourceExhausted: true, codes.Aborted: true, codes.DeadlineExceeded: true}

// maxAttempts and maxDelay bound the retries of one request (about 25 s in all).
const (
	maxAttempts = 10
	maxDelay    = 5 * time.Second
)

// send makes one request for items and returns per-item results and errors; err is a
// failure of the whole request after retries.
func (r *run) send(ctx context.Context, items []Field) ([]string, []error, error) {
	out := make([]string, len(items))
	errs := make([]error, len(items))
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := r.sendOnce(ctx, items, out, errs)
		if err == nil {
			return out, errs, nil
		}
		if !retryable[status.Code(err)] || attempt == maxAttempts || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil, nil, context.Cause(ctx)
			}
			return nil, nil, fmt.Errorf("%s request: %w", r.job.Operation, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		}
		delay = min(2*delay, maxDelay)
	}
}

func (r *run) sendOnce(ctx context.Context, items []Field, out []string, errs []error) error {
	if r.job.Format == FormatFHIRNDJSON {
		return r.sendFHIR(ctx, items, out, errs)
	}
	c := r.opts.Client
	if r.job.Operation == Tokenize {
		req := &tokenizerv1.TokenizeRequest{Items: make([]*tokenizerv1.TokenizeItem, len(items))}
		for i, f := range items {
			req.Items[i] = &tokenizerv1.TokenizeItem{Class: f.Class, Value: f.Value}
		}
		resp, err := c.Tokenize(ctx, req)
		if err != nil {
			return err
		}
		if len(resp.GetResults()) != len(items) {
			return errors.New("the service returned a different number of results")
		}
		for i, res := range resp.GetResults() {
			out[i], errs[i] = res.GetToken(), itemErr(res.GetError())
		}
		return nil
	}
	req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: r.job.Purpose, Justification: r.job.Justification,
		Items: make([]*tokenizerv1.DetokenizeItem, len(items))}
	for i, f := range items {
		req.Items[i] = &tokenizerv1.DetokenizeItem{Class: f.Class, Token: f.Value}
	}
	resp, err := c.Detokenize(ctx, req)
	if err != nil {
		return err
	}
	if len(resp.GetResults()) != len(items) {
		return errors.New("the service returned a different number of results")
	}
	for i, res := range resp.GetResults() {
		out[i], errs[i] = res.GetValue(), itemErr(res.GetError())
	}
	return nil
}

func itemErr(s interface {
	GetCode() int32
	GetMessage() string
}) error {
	if s == nil || s.GetCode() == 0 {
		return nil
	}
	return status.Error(codes.Code(s.GetCode()), s.GetMessage())
}
