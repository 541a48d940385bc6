package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// tokenizerService converts tokenizer.v1 messages to engine calls and back; the batch
// skeleton (runBatch) authorizes and records them.
type tokenizerService struct {
	tokenizerv1.UnimplementedTokenizerServiceServer
	s *Server
}

// itemStatus is the per-item google.rpc.Status of an item error (an *errs.Error with
// a caller-safe message).
func (t *tokenizerService) itemStatus(ctx context.Context, err error) *spb.Status {
	if err == nil {
		return nil
	}
	return toStatus(ctx, t.s.log, err).Proto()
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
	results, _, err := app.RunBatch(ctx, t.s.app, items, app.Batch[tokenizer.TokenizeItem, tokenizer.TokenizeResult]{
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
	errList := make([]error, len(results))
	for i, r := range results {
		out := &tokenizerv1.TokenizeResult{Reference: in[i].GetReference(), Token: r.Token, Error: t.itemStatus(ctx, r.Err), SubjectToken: r.SubjectToken}
		if r.ExpiresAt != nil && r.Err == nil {
			out.ExpireTime = timestamppb.New(*r.ExpiresAt)
		}
		if r.SubjectDigest != nil && r.Err == nil {
			rec := audit.RecordFrom(ctx)
			rec.SubjectDigests = append(rec.SubjectDigests, r.SubjectDigest)
		}
		resp.Results[i], errList[i] = out, r.Err
	}
	t.s.countItems(ctx, "tokenize", classes, errList)
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
	results, d, err := app.RunBatch(ctx, t.s.app, items, app.Batch[tokenizer.DetokenizeItem, tokenizer.DetokenizeResult]{
		Op: policy.OpDetokenize, Classes: classes, Purpose: req.GetPurposeOfUse(), Justification: req.GetJustification(),
		Mark: func(it *tokenizer.DetokenizeItem, e policy.Effect) { it.NeedsGrant = e == policy.Grant },
		Run: func(ctx context.Context, eng *tokenizer.Engine, sub []tokenizer.DetokenizeItem) ([]tokenizer.DetokenizeResult, error) {
			return eng.DetokenizeWith(ctx, sub, t.s.app.GrantGuard(callerID(ctx), req.GetPurposeOfUse()))
		},
		Fail: func(err error) tokenizer.DetokenizeResult { return tokenizer.DetokenizeResult{Err: err} },
	})
	if err != nil {
		return nil, err
	}
	if d.BreakGlass {
		t.s.metrics.BreakGlass.Inc()
	}
	eng, _ := t.s.app.Engine()
	rec := audit.RecordFrom(ctx)
	resp := &tokenizerv1.DetokenizeResponse{Results: make([]*tokenizerv1.DetokenizeResult, len(results))}
	errList := make([]error, len(results))
	for i, r := range results {
		out := &tokenizerv1.DetokenizeResult{Reference: in[i].GetReference(), Error: t.itemStatus(ctx, r.Err)}
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
			rec.Denied = append(rec.Denied, "class "+t.s.app.ClassLabel(items[i].Class)+": "+policy.OpDetokenizeGranted)
		}
		resp.Results[i], errList[i] = out, r.Err
	}
	t.s.countItems(ctx, "detokenize", classes, errList)
	if id := t.s.app.CountReveals(ctx, requestID(ctx), len(rec.TokenDigests)); id != "" {
		t.s.metrics.Anomalies.WithLabelValues(id).Inc()
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
	results, _, err := app.RunBatch(ctx, t.s.app, items, app.Batch[tokenizer.DeleteItem, tokenizer.DeleteResult]{
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
	errList := make([]error, len(results))
	for i, r := range results {
		resp.Results[i] = &tokenizerv1.DeleteResult{Reference: in[i].GetReference(), Deleted: r.Deleted, Error: t.itemStatus(ctx, r.Err)}
		if r.Err == nil && r.Digest != nil {
			rec.TokenDigests = append(rec.TokenDigests, r.Digest)
		}
		errList[i] = r.Err
	}
	t.s.countItems(ctx, "delete", classes, errList)
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

func (t *tokenizerService) ListClasses(ctx context.Context, _ *tokenizerv1.ListClassesRequest) (*tokenizerv1.ListClassesResponse, error) {
	if policy.PrincipalFrom(ctx) == nil {
		return nil, errs.New(errs.PermissionDenied, "caller %s has no entry in the policy", callerID(ctx))
	}
	resp := &tokenizerv1.ListClassesResponse{}
	classes := slices.Clone(t.s.app.Classes)
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

// countItems records per-item outcomes in the audit record and the items metric.
func (s *Server) countItems(ctx context.Context, op string, classes []string, errList []error) {
	rec := audit.RecordFrom(ctx)
	for i, c := range classes {
		outcome := "OK"
		if errList[i] != nil {
			rec.ItemsFailed++
			outcome = kindCodes[errs.KindOf(errList[i])].String()
		}
		s.metrics.Items.WithLabelValues(op, s.app.ClassLabel(c), outcome).Inc()
	}
}
