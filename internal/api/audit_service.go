package api

import (
	"context"
	"encoding/hex"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
)

type auditService struct {
	tokenizerv1.UnimplementedAuditServiceServer
	h *Handlers
}

func (a *auditService) signer() (audit.Signer, error) {
	sg, ok := a.h.App.Signer()
	if !ok {
		return nil, errs.New(errs.FailedPrecondition, "the key provider cannot verify checkpoint signatures")
	}
	return sg, nil
}

func (a *auditService) VerifyAudit(ctx context.Context, req *tokenizerv1.VerifyAuditRequest) (*tokenizerv1.VerifyAuditResponse, error) {
	if req.GetFromSeq() < 0 || req.GetToSeq() < 0 || (req.GetToSeq() > 0 && req.GetToSeq() < req.GetFromSeq()) {
		return nil, errs.New(errs.InvalidArgument, "from_seq, to_seq: want 0 ≤ from_seq ≤ to_seq (0 for the head)")
	}
	if err := requireOp(ctx, policy.OpAuditVerify); err != nil {
		return nil, err
	}
	sg, err := a.signer()
	if err != nil {
		return nil, err
	}
	macs := a.h.App.AuditKeys()
	if macs == nil {
		return nil, errs.New(errs.Unavailable, "service is not ready: audit keys not loaded yet")
	}
	// The configured sink holds the chain to what it has seen: a log truncated or wiped
	// in the database fails here, not only with an explicit checkpoint file.
	held, _, err := audit.SinkCheckpoints(a.h.App.Config.Audit.CheckpointSink)
	if err != nil {
		return nil, errs.Wrap(errs.FailedPrecondition, err, "audit checkpoint sink unreadable")
	}
	res, err := audit.Verify(ctx, a.h.App.Store, sg, macs, req.GetFromSeq(), req.GetToSeq(), held)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "audit log unavailable")
	}
	return &tokenizerv1.VerifyAuditResponse{
		Ok: res.OK, EventsChecked: res.EventsChecked, CheckpointsChecked: res.CheckpointsChecked,
		FirstBadSeq: res.FirstBadSeq, Reason: res.Reason, HeadSeq: res.HeadSeq, HeadHash: hex.EncodeToString(res.HeadHash),
	}, nil
}

var exportFormats = map[tokenizerv1.ExportFormat]audit.Format{
	tokenizerv1.ExportFormat_EXPORT_FORMAT_UNSPECIFIED: audit.JSONL,
	tokenizerv1.ExportFormat_EXPORT_FORMAT_JSONL:       audit.JSONL,
	tokenizerv1.ExportFormat_EXPORT_FORMAT_CSV:         audit.CSV,
	tokenizerv1.ExportFormat_EXPORT_FORMAT_FHIR:        audit.FHIR,
}

// chunkWriter streams an export as HttpBody messages of up to 64 KiB.
type chunkWriter struct {
	stream      tokenizerv1.AuditService_ExportAuditServer
	contentType string
	buf         []byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	if len(c.buf) >= 64<<10 {
		return len(p), c.flush()
	}
	return len(p), nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.stream.Send(&httpbody.HttpBody{ContentType: c.contentType, Data: c.buf})
	c.buf = nil
	return err
}

func (a *auditService) ExportAudit(req *tokenizerv1.ExportAuditRequest, stream tokenizerv1.AuditService_ExportAuditServer) error {
	f, ok := exportFormats[req.GetFormat()]
	if !ok {
		return errs.New(errs.InvalidArgument, "format: want EXPORT_FORMAT_JSONL, EXPORT_FORMAT_CSV or EXPORT_FORMAT_FHIR")
	}
	if req.GetFromSeq() < 0 || req.GetToSeq() < 0 {
		return errs.New(errs.InvalidArgument, "from_seq, to_seq: must not be negative")
	}
	if err := requireOp(stream.Context(), policy.OpAuditExport); err != nil {
		return err
	}
	// Exporting is itself audited, before any event leaves.
	err := a.h.Transport.Message(stream.Context(), "export_audit", func(context.Context) error { return nil })
	if err != nil {
		return err
	}
	w := &chunkWriter{stream: stream, contentType: f.ContentType()}
	if err := audit.Export(stream.Context(), a.h.App.Store, f, req.GetFromSeq(), req.GetToSeq(), w); err != nil {
		return errs.Wrap(errs.Unavailable, err, "audit log unavailable")
	}
	return w.flush()
}

func (a *auditService) ListDisclosures(ctx context.Context, req *tokenizerv1.ListDisclosuresRequest) (*tokenizerv1.ListDisclosuresResponse, error) {
	rec := audit.RecordFrom(ctx)
	rec.Items = 1
	rec.Classes = []string{a.h.App.ClassLabel(req.GetClass())}
	if err := requireOp(ctx, policy.OpDisclosures); err != nil {
		return nil, err
	}
	eng, err := a.h.App.Engine()
	if err != nil {
		return nil, err
	}
	digests, err := disclosureDigests(eng, req.GetClass(), req.GetToken(), req.GetSubject())
	if err != nil {
		return nil, err
	}
	start, end, err := accountingRange(req.GetStartTime(), req.GetEndTime())
	if err != nil {
		return nil, err
	}
	ds, err := audit.Disclosures(ctx, a.h.App.Store, digests, start, end)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "audit log unavailable")
	}
	resp := &tokenizerv1.ListDisclosuresResponse{}
	for _, d := range ds {
		resp.Disclosures = append(resp.Disclosures, &tokenizerv1.Disclosure{
			Seq: d.Seq, Time: timestamppb.New(d.Time), RequestId: d.RequestID, Caller: d.Caller,
			PurposeOfUse: d.PurposeOfUse, Justification: d.Justification, ClientAddress: d.ClientAddress,
			BreakGlass: d.BreakGlass, Masked: d.Masked, Classes: d.Classes, Grants: d.Grants,
		})
	}
	return resp, nil
}
