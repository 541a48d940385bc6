package api

import (
	"context"
	"slices"
	"strings"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/grpcx"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// tokenizerService converts tokenizer.v1 messages to engine calls and back; the batch
// skeleton (runBatch) authorizes and records them.
type tokenizerService struct {
	tokenizerv1.UnimplementedTokenizerServiceServer
	h *Handlers
}

func (t *tokenizerService) Tokenize(ctx context.Context, req *tokenizerv1.TokenizeRequest) (*tokenizerv1.TokenizeResponse, error) {
	in := req.GetItems()
	items := make([]tokenizer.TokenizeItem, len(in))
	classes := make([]string, len(in))
	for i, it := range in {
		items[i] = tokenizer.TokenizeItem{Class: it.GetClass(), Value: it.GetValue(), Scope: it.GetScope(), Subject: it.GetSubject()}
		classes[i] = it.GetClass()
	}
	ttl := req.GetTtl()
	results, _, err := app.RunBatch(ctx, t.h.App, items, app.Batch[tokenizer.TokenizeItem, tokenizer.TokenizeResult]{
		Op: policy.OpTokenize, Classes: classes,
		Check: func() error {
			if ttl != nil && ttl.CheckValid() != nil {
				return errs.New(errs.InvalidArgument, "ttl: not a valid duration")
			}
			return nil
		},
		Run: func(ctx context.Context, eng *tokenizer.Engine, sub []tokenizer.TokenizeItem) ([]tokenizer.TokenizeResult, error) {
			return eng.Tokenize(ctx, sub, ttl.AsDuration())
		},
		Fail: func(err error) tokenizer.TokenizeResult { return tokenizer.TokenizeResult{Err: err} },
	})
	if err != nil {
		return nil, err
	}
	resp := &tokenizerv1.TokenizeResponse{Results: make([]*tokenizerv1.TokenizeResult, len(results))}
	statuses := make([]*spb.Status, len(results))
	created := 0
	for i, r := range results {
		if r.Created {
			created++
		}
		out := &tokenizerv1.TokenizeResult{Reference: in[i].GetReference(), Token: r.Token, Error: t.h.itemStatus(ctx, r.Err), SubjectToken: r.SubjectToken}
		if r.ExpiresAt != nil && r.Err == nil {
			out.ExpireTime = timestamppb.New(*r.ExpiresAt)
		}
		if r.SubjectDigest != nil && r.Err == nil {
			rec := audit.RecordFrom(ctx)
			rec.SubjectDigests = append(rec.SubjectDigests, r.SubjectDigest)
		}
		resp.Results[i], statuses[i] = out, out.Error
	}
	t.h.countItems(ctx, "tokenize", classes, statuses)
	if id := t.h.App.CountCreated(ctx, grpcx.RequestID(ctx), created); id != "" {
		t.h.Metrics.Anomalies.WithLabelValues(id).Inc()
	}
	return resp, nil
}

func (t *tokenizerService) Detokenize(ctx context.Context, req *tokenizerv1.DetokenizeRequest) (*tokenizerv1.DetokenizeResponse, error) {
	in := req.GetItems()
	items := make([]tokenizer.DetokenizeItem, len(in))
	classes := make([]string, len(in))
	for i, it := range in {
		items[i] = tokenizer.DetokenizeItem{Class: it.GetClass(), Token: it.GetToken()}
		classes[i] = it.GetClass()
	}
	results, d, err := app.RunBatch(ctx, t.h.App, items, app.Batch[tokenizer.DetokenizeItem, tokenizer.DetokenizeResult]{
		Op: policy.OpDetokenize, Classes: classes, Purpose: req.GetPurposeOfUse(), Justification: req.GetJustification(),
		Mark: func(it *tokenizer.DetokenizeItem, e policy.Effect) { it.NeedsGrant = e == policy.Grant },
		Run: func(ctx context.Context, eng *tokenizer.Engine, sub []tokenizer.DetokenizeItem) ([]tokenizer.DetokenizeResult, error) {
			return eng.DetokenizeWith(ctx, sub, t.h.App.GrantGuard(callerID(ctx), req.GetPurposeOfUse()))
		},
		Fail: func(err error) tokenizer.DetokenizeResult { return tokenizer.DetokenizeResult{Err: err} },
	})
	if err != nil {
		return nil, err
	}
	if d.BreakGlass {
		t.h.Metrics.BreakGlass.Inc()
	}
	eng, _ := t.h.App.Engine()
	rec := audit.RecordFrom(ctx)
	resp := &tokenizerv1.DetokenizeResponse{Results: make([]*tokenizerv1.DetokenizeResult, len(results))}
	statuses := make([]*spb.Status, len(results))
	misses := 0
	for i, r := range results {
		if errs.KindOf(r.Err) == errs.NotFound {
			misses++
		}
		out := &tokenizerv1.DetokenizeResult{Reference: in[i].GetReference(), Error: t.h.itemStatus(ctx, r.Err)}
		if r.Err == nil {
			out.Value, out.Masked = r.Value, d.Items[i].Effect == policy.Mask
			if out.Masked {
				out.Value = eng.Mask(items[i].Class, r.Value)
			}
			rec.TokenDigests = append(rec.TokenDigests, r.Digest)
			if r.SubjectDigest != nil {
				rec.SubjectDigests = append(rec.SubjectDigests, r.SubjectDigest)
			}
			if r.Grant != "" {
				rec.Grants = append(rec.Grants, r.Grant)
			}
			rec.Masked = rec.Masked || out.Masked
		}
		if d.Items[i].Effect == policy.Grant && errs.KindOf(r.Err) == errs.PermissionDenied {
			rec.Denied = append(rec.Denied, "class "+t.h.App.ClassLabel(items[i].Class)+": "+policy.OpDetokenizeGranted)
		}
		resp.Results[i], statuses[i] = out, out.Error
	}
	t.h.countItems(ctx, "detokenize", classes, statuses)
	if id := t.h.App.CountReveals(ctx, grpcx.RequestID(ctx), len(rec.TokenDigests), misses); id != "" {
		t.h.Metrics.Anomalies.WithLabelValues(id).Inc()
	}
	return resp, nil
}

func (t *tokenizerService) DeleteTokens(ctx context.Context, req *tokenizerv1.DeleteTokensRequest) (*tokenizerv1.DeleteTokensResponse, error) {
	in := req.GetItems()
	items := make([]tokenizer.DeleteItem, len(in))
	classes := make([]string, len(in))
	for i, it := range in {
		items[i] = tokenizer.DeleteItem{Class: it.GetClass(), Token: it.GetToken(), Value: it.GetValue(), Scope: it.GetScope()}
		classes[i] = it.GetClass()
	}
	results, _, err := app.RunBatch(ctx, t.h.App, items, app.Batch[tokenizer.DeleteItem, tokenizer.DeleteResult]{
		Op: policy.OpDelete, Classes: classes,
		Run: func(ctx context.Context, eng *tokenizer.Engine, sub []tokenizer.DeleteItem) ([]tokenizer.DeleteResult, error) {
			return eng.DeleteTokens(ctx, sub)
		},
		Fail: func(err error) tokenizer.DeleteResult { return tokenizer.DeleteResult{Err: err} },
	})
	if err != nil {
		return nil, err
	}
	rec := audit.RecordFrom(ctx)
	resp := &tokenizerv1.DeleteTokensResponse{Results: make([]*tokenizerv1.DeleteResult, len(results))}
	statuses := make([]*spb.Status, len(results))
	for i, r := range results {
		resp.Results[i] = &tokenizerv1.DeleteResult{Reference: in[i].GetReference(), Deleted: r.Deleted, Error: t.h.itemStatus(ctx, r.Err)}
		if r.Err == nil && r.Digest != nil {
			rec.TokenDigests = append(rec.TokenDigests, r.Digest)
		}
		statuses[i] = resp.Results[i].Error
	}
	t.h.countItems(ctx, "delete", classes, statuses)
	return resp, nil
}

func (t *tokenizerService) TokenizeStream(stream tokenizerv1.TokenizerService_TokenizeStreamServer) error {
	return serveBatches(t.h, stream, "tokenize_stream", t.Tokenize)
}

func (t *tokenizerService) DetokenizeStream(stream tokenizerv1.TokenizerService_DetokenizeStreamServer) error {
	return serveBatches(t.h, stream, "detokenize_stream", t.Detokenize)
}

func (t *tokenizerService) ListClasses(ctx context.Context, _ *tokenizerv1.ListClassesRequest) (*tokenizerv1.ListClassesResponse, error) {
	if err := requirePrincipal(ctx); err != nil {
		return nil, err
	}
	resp := &tokenizerv1.ListClassesResponse{}
	classes := slices.Clone(t.h.App.Classes)
	slices.SortFunc(classes, func(a, b *tokenizer.Class) int { return strings.Compare(a.Name, b.Name) })
	for _, c := range classes {
		tc := &tokenizerv1.TokenClass{
			Name: c.Name, Format: c.Format, Mode: c.Mode, Generator: c.Generator,
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
