package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

const maxJustificationBytes = 1024

type tokenizerService struct {
	tokenizerv1.UnimplementedTokenizerServiceServer
	s *Server
}

func classesOf[T any](items []T, class func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = class(it)
	}
	return out
}

// itemStatus is the per-item google.rpc.Status of an item error (an *errs.Error with
// a caller-safe message).
func (t *tokenizerService) itemStatus(ctx context.Context, err error) *spb.Status {
	return toStatus(ctx, t.s.log, err).Proto()
}

func (t *tokenizerService) countItems(op string, classes []string, errors []error) {
	for i, c := range classes {
		if !t.s.isClass(c) {
			c = "unknown"
		}
		outcome := codes.OK.String()
		if errors[i] != nil {
			outcome = kindCodes[errs.KindOf(errors[i])].String()
		}
		t.s.metrics.items.WithLabelValues(op, c, outcome).Inc()
	}
}

func (t *tokenizerService) Tokenize(ctx context.Context, req *tokenizerv1.TokenizeRequest) (*tokenizerv1.TokenizeResponse, error) {
	items := make([]tokenizer.TokenizeItem, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = tokenizer.TokenizeItem{Class: it.GetClass(), Value: it.GetValue(), Scope: it.GetScope()}
	}
	rec := audit.RecordFrom(ctx)
	rec.Items = len(items)
	for _, it := range items {
		rec.Classes = append(rec.Classes, t.s.classLabel(it.Class))
	}
	eng, err := t.s.engineReady()
	if err != nil {
		return nil, err
	}
	if err := requireAnyClass(ctx, "tokenize", policy.OpTokenize); err != nil {
		return nil, err
	}
	var ttl durationpb.Duration
	if req.GetTtl() != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return nil, errs.New(errs.InvalidArgument, "ttl: not a valid duration")
		}
		ttl.Seconds, ttl.Nanos = req.GetTtl().GetSeconds(), req.GetTtl().GetNanos()
	}
	if len(items) > t.s.cfg.Limits.MaxItems {
		return nil, errs.New(errs.InvalidArgument, "items: %d items exceed the limit of %d per request", len(items), t.s.cfg.Limits.MaxItems)
	}
	results := make([]tokenizer.TokenizeResult, len(items))
	allowed, denied := t.s.permitted(ctx, rec, classesOf(items, func(it tokenizer.TokenizeItem) string { return it.Class }), policy.OpTokenize)
	for i, err := range denied {
		results[i].Err = err
	}
	if err := runAllowed(items, allowed, results, func(sub []tokenizer.TokenizeItem) ([]tokenizer.TokenizeResult, error) {
		return eng.Tokenize(ctx, sub, ttl.AsDuration())
	}); err != nil {
		return nil, err
	}
	resp := &tokenizerv1.TokenizeResponse{Results: make([]*tokenizerv1.TokenizeResult, len(results))}
	classes := make([]string, len(results))
	errList := make([]error, len(results))
	for i, r := range results {
		out := &tokenizerv1.TokenizeResult{Reference: req.GetItems()[i].GetReference()}
		if r.Err != nil {
			out.Error = t.itemStatus(ctx, r.Err)
		} else {
			out.Token = r.Token
			if r.ExpiresAt != nil {
				out.ExpireTime = timestamppb.New(*r.ExpiresAt)
			}
		}
		resp.Results[i] = out
		classes[i], errList[i] = items[i].Class, r.Err
		if r.Err != nil {
			rec.ItemsFailed++
		}
	}
	t.countItems("tokenize", classes, errList)
	return resp, nil
}

func checkPurpose(req *tokenizerv1.DetokenizeRequest) error {
	p := req.GetPurposeOfUse()
	if p == "" {
		return errs.New(errs.InvalidArgument, "purpose_of_use: required on every detokenize (an HL7 v3 PurposeOfUse code such as TREAT)")
	}
	if _, ok := policy.PurposesOfUse[p]; !ok {
		return errs.New(errs.InvalidArgument, "purpose_of_use: not a known HL7 v3 PurposeOfUse code")
	}
	if len(req.GetJustification()) > maxJustificationBytes || !utf8.ValidString(req.GetJustification()) {
		return errs.New(errs.InvalidArgument, "justification: at most %d bytes of UTF-8", maxJustificationBytes)
	}
	return nil
}

func (t *tokenizerService) Detokenize(ctx context.Context, req *tokenizerv1.DetokenizeRequest) (*tokenizerv1.DetokenizeResponse, error) {
	rec := audit.RecordFrom(ctx)
	rec.Items = len(req.GetItems())
	for _, it := range req.GetItems() {
		rec.Classes = append(rec.Classes, t.s.classLabel(it.GetClass()))
	}
	if _, known := policy.PurposesOfUse[req.GetPurposeOfUse()]; known {
		rec.PurposeOfUse = req.GetPurposeOfUse()
		rec.BreakGlass = req.GetPurposeOfUse() == policy.BreakGlass
	}
	if utf8.ValidString(req.GetJustification()) && len(req.GetJustification()) <= maxJustificationBytes {
		rec.Justification = req.GetJustification()
	}
	eng, err := t.s.engineReady()
	if err != nil {
		return nil, err
	}
	if err := checkPurpose(req); err != nil {
		return nil, err
	}
	if err := t.s.authorizePurpose(ctx, req.GetPurposeOfUse(), req.GetJustification()); err != nil {
		return nil, err
	}
	if err := requireAnyClass(ctx, "detokenize", policy.OpDetokenize, policy.OpDetokenizeMasked); err != nil {
		return nil, err
	}
	items := make([]tokenizer.DetokenizeItem, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = tokenizer.DetokenizeItem{Class: it.GetClass(), Token: it.GetToken()}
	}
	if len(items) > t.s.cfg.Limits.MaxItems {
		return nil, errs.New(errs.InvalidArgument, "items: %d items exceed the limit of %d per request", len(items), t.s.cfg.Limits.MaxItems)
	}
	// Per item: the full value, the masked value, or PERMISSION_DENIED.
	pr := principalFrom(ctx)
	results := make([]tokenizer.DetokenizeResult, len(items))
	masked := make([]bool, len(items))
	var allowed []int
	for i, it := range items {
		if t.s.isClass(it.Class) && !pr.Can(it.Class, policy.OpDetokenize) {
			if !pr.Can(it.Class, policy.OpDetokenizeMasked) {
				results[i].Err = itemDenied(it.Class, policy.OpDetokenize)
				rec.Denied = append(rec.Denied, "class "+it.Class+": "+policy.OpDetokenize)
				continue
			}
			masked[i] = true
		}
		allowed = append(allowed, i)
	}
	if err := runAllowed(items, allowed, results, func(sub []tokenizer.DetokenizeItem) ([]tokenizer.DetokenizeResult, error) {
		return eng.Detokenize(ctx, sub)
	}); err != nil {
		return nil, err
	}
	for i := range results {
		if masked[i] && results[i].Err == nil {
			results[i].Value = eng.Mask(items[i].Class, results[i].Value)
		}
	}
	if rec.BreakGlass {
		t.s.metrics.breakGlass.Inc()
	}
	resp := &tokenizerv1.DetokenizeResponse{Results: make([]*tokenizerv1.DetokenizeResult, len(results))}
	classes := make([]string, len(results))
	errList := make([]error, len(results))
	for i, r := range results {
		out := &tokenizerv1.DetokenizeResult{Reference: req.GetItems()[i].GetReference()}
		if r.Err != nil {
			out.Error = t.itemStatus(ctx, r.Err)
			rec.ItemsFailed++
		} else {
			out.Value, out.Masked = r.Value, masked[i]
			rec.TokenDigests = append(rec.TokenDigests, r.Digest)
			rec.Masked = rec.Masked || masked[i]
		}
		resp.Results[i] = out
		classes[i], errList[i] = items[i].Class, r.Err
	}
	t.countItems("detokenize", classes, errList)
	t.s.countReveals(ctx, len(rec.TokenDigests))
	return resp, nil
}

// batchStream is a bidirectional stream of batches.
type batchStream[Req, Resp any] interface {
	Context() context.Context
	Recv() (*Req, error)
	Send(*Resp) error
}

// serveBatches answers each batch of a stream in order, each with its own audit event
// written before its response is sent.
func serveBatches[Req, Resp any](s *Server, stream batchStream[Req, Resp], op string, handle func(context.Context, *Req) (*Resp, error)) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := auditedMessage(s, stream.Context(), op, func(ctx context.Context) (*Resp, error) { return handle(ctx, req) })
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (t *tokenizerService) TokenizeStream(stream tokenizerv1.TokenizerService_TokenizeStreamServer) error {
	return serveBatches(t.s, stream, "tokenize_stream", t.Tokenize)
}

func (t *tokenizerService) DetokenizeStream(stream tokenizerv1.TokenizerService_DetokenizeStreamServer) error {
	return serveBatches(t.s, stream, "detokenize_stream", t.Detokenize)
}

func (t *tokenizerService) DeleteTokens(ctx context.Context, req *tokenizerv1.DeleteTokensRequest) (*tokenizerv1.DeleteTokensResponse, error) {
	eng, err := t.s.engineReady()
	if err != nil {
		return nil, err
	}
	items := make([]tokenizer.DeleteItem, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = tokenizer.DeleteItem{Class: it.GetClass(), Token: it.GetToken(), Value: it.GetValue(), Scope: it.GetScope()}
	}
	rec := audit.RecordFrom(ctx)
	rec.Items = len(items)
	for _, it := range items {
		rec.Classes = append(rec.Classes, t.s.classLabel(it.Class))
	}
	if err := requireAnyClass(ctx, "delete tokens", policy.OpDelete); err != nil {
		return nil, err
	}
	if len(items) > t.s.cfg.Limits.MaxItems {
		return nil, errs.New(errs.InvalidArgument, "items: %d items exceed the limit of %d per request", len(items), t.s.cfg.Limits.MaxItems)
	}
	results := make([]tokenizer.DeleteResult, len(items))
	allowed, denied := t.s.permitted(ctx, rec, classesOf(items, func(it tokenizer.DeleteItem) string { return it.Class }), policy.OpDelete)
	for i, err := range denied {
		results[i].Err = err
	}
	if err := runAllowed(items, allowed, results, func(sub []tokenizer.DeleteItem) ([]tokenizer.DeleteResult, error) {
		return eng.DeleteTokens(ctx, sub)
	}); err != nil {
		return nil, err
	}
	resp := &tokenizerv1.DeleteTokensResponse{Results: make([]*tokenizerv1.DeleteResult, len(results))}
	for i, r := range results {
		out := &tokenizerv1.DeleteResult{Reference: req.GetItems()[i].GetReference(), Deleted: r.Deleted}
		if r.Err != nil {
			out.Error = t.itemStatus(ctx, r.Err)
			rec.ItemsFailed++
		} else if r.Digest != nil {
			rec.TokenDigests = append(rec.TokenDigests, r.Digest)
		}
		resp.Results[i] = out
	}
	return resp, nil
}

func (t *tokenizerService) ListClasses(ctx context.Context, _ *tokenizerv1.ListClassesRequest) (*tokenizerv1.ListClassesResponse, error) {
	if principalFrom(ctx) == nil {
		return nil, errs.New(errs.PermissionDenied, "caller %s has no entry in the policy", callerID(ctx))
	}
	resp := &tokenizerv1.ListClassesResponse{}
	classes := slices.Clone(t.s.classes)
	slices.SortFunc(classes, func(a, b *tokenizer.Class) int { return strings.Compare(a.Name, b.Name) })
	for _, c := range classes {
		tc := &tokenizerv1.TokenClass{
			Name: c.Name, Format: c.Format, Mode: string(c.Mode), Generator: string(c.Generator),
			Distinguishable: *c.Distinguishable,
			PreservePrefix:  int32(c.PreservePrefix), PreserveSuffix: int32(c.PreserveSuffix),
		}
		if c.TTL > 0 {
			tc.Ttl = durationpb.New(c.TTL)
		}
		resp.Classes = append(resp.Classes, tc)
	}
	return resp, nil
}
