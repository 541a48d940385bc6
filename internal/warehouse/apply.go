package warehouse

import (
	"context"
	"encoding/json"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// rowError is a problem with one row's argument (not with the call).
type rowError struct {
	row int
	msg string
}

// apply tokenizes or detokenizes values (nil: SQL NULL, which stays NULL) in requests
// of at most MaxItems. A value the service refuses gives NULL, or with on_error=fail
// fails the call naming its row; a refusal of the call (unknown class, denied caller,
// missing purpose) always fails the call.
func (h *handler) apply(ctx context.Context, c *call, values []*string, bad []rowError) ([]*string, *callError) {
	out := make([]*string, len(values))
	if c.failRows && len(bad) > 0 {
		return nil, badRequest("row %d: %s", bad[0].row, bad[0].msg)
	}
	var idx []int
	for i, v := range values {
		if v != nil {
			idx = append(idx, i)
		}
	}
	for lo := 0; lo < len(idx); lo += h.opts.MaxItems {
		part := idx[lo:min(lo+h.opts.MaxItems, len(idx))]
		res, errs, err := h.send(ctx, c, values, part)
		if err != nil {
			return nil, statusOf(err)
		}
		for k, i := range part {
			if errs[k] == nil {
				v := res[k]
				out[i] = &v
				continue
			}
			st := status.Convert(errs[k])
			rowLevel := st.Code() == codes.NotFound || (st.Code() == codes.InvalidArgument && !strings.Contains(st.Message(), "unknown class"))
			if !rowLevel {
				return nil, statusOf(errs[k])
			}
			if c.failRows {
				return nil, badRequest("row %d: %s", i, st.Message())
			}
		}
	}
	return out, nil
}

func (h *handler) send(ctx context.Context, c *call, values []*string, part []int) ([]string, []error, error) {
	res := make([]string, len(part))
	errs := make([]error, len(part))
	item := func(e interface {
		GetCode() int32
		GetMessage() string
	}) error {
		if e.GetCode() == 0 {
			return nil
		}
		return status.Error(codes.Code(e.GetCode()), e.GetMessage())
	}
	if c.op == "tokenize" {
		req := &tokenizerv1.TokenizeRequest{Items: make([]*tokenizerv1.TokenizeItem, len(part))}
		for k, i := range part {
			req.Items[k] = &tokenizerv1.TokenizeItem{Class: c.class, Value: *values[i]}
		}
		resp, err := h.client.Tokenize(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		if len(resp.GetResults()) != len(part) {
			return nil, nil, status.Error(codes.Internal, "the service returned a different number of results")
		}
		for k, r := range resp.GetResults() {
			res[k], errs[k] = r.GetToken(), item(r.GetError())
		}
		return res, errs, nil
	}
	req := &tokenizerv1.DetokenizeRequest{PurposeOfUse: c.purpose, Justification: c.auditJustification(),
		Items: make([]*tokenizerv1.DetokenizeItem, len(part))}
	for k, i := range part {
		req.Items[k] = &tokenizerv1.DetokenizeItem{Class: c.class, Token: *values[i]}
	}
	resp, err := h.client.Detokenize(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	if len(resp.GetResults()) != len(part) {
		return nil, nil, status.Error(codes.Internal, "the service returned a different number of results")
	}
	for k, r := range resp.GetResults() {
		res[k], errs[k] = r.GetValue(), item(r.GetError())
	}
	return res, errs, nil
}

// rowArgs reads the single argument of each row; rows lists the rows' JSON arrays
// without any leading element the contract adds (Snowflake's row number).
func rowArgs(rows [][]json.RawMessage, skip int) ([]*string, []rowError, *callError) {
	values := make([]*string, len(rows))
	var bad []rowError
	for i, row := range rows {
		if row == nil { // Redshift may send null for a row
			continue
		}
		if len(row) != skip+1 {
			return nil, nil, badRequest("row %d: want %d element(s), got %d (the function takes one argument)", i, skip+1, len(row))
		}
		v, err := argument(row[skip])
		if err != nil {
			bad = append(bad, rowError{row: i, msg: err.Error()})
			continue
		}
		values[i] = v
	}
	return values, bad, nil
}
