package api

import (
	"context"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// subjectService converts tokenizer.v1 SubjectService messages to engine calls.
type subjectService struct {
	tokenizerv1.UnimplementedSubjectServiceServer
	h *Handlers
}

// checkReason validates an erasure's reason: required, bounded free text.
func checkReason(reason string) error {
	switch {
	case strings.TrimSpace(reason) == "":
		return errs.New(errs.InvalidArgument, "reason: required (why the subject is erased, e.g. the request's reference)")
	case len(reason) > policy.MaxJustificationBytes || !utf8.ValidString(reason):
		return errs.New(errs.InvalidArgument, "reason: at most %d bytes of UTF-8", policy.MaxJustificationBytes)
	}
	return nil
}

func (x *subjectService) ForgetSubject(ctx context.Context, req *tokenizerv1.ForgetSubjectRequest) (*tokenizerv1.ForgetSubjectResponse, error) {
	subject := req.GetSubject()
	results, _, err := app.RunBatch(ctx, x.h.App, []string{subject}, app.Batch[string, tokenizer.Erasure]{
		Op: policy.OpSubjectForget, Justification: req.GetReason(),
		Check: func() error { return checkReason(req.GetReason()) },
		Run: func(ctx context.Context, eng *tokenizer.Engine, sub []string) ([]tokenizer.Erasure, error) {
			er, err := eng.ForgetSubject(ctx, sub[0])
			return []tokenizer.Erasure{er}, err
		},
		Fail: func(error) tokenizer.Erasure { return tokenizer.Erasure{} },
	})
	if err != nil {
		return nil, err
	}
	er := results[0]
	rec := audit.RecordFrom(ctx)
	rec.SubjectDigests = [][]byte{er.AuditDigest}
	rec.Erased = er.Counts
	rec.Classes = slices.Sorted(maps.Keys(er.Counts))
	return &tokenizerv1.ForgetSubjectResponse{SubjectDigest: hex.EncodeToString(er.AuditDigest), Erased: er.Counts}, nil
}

func (x *subjectService) GetErasureReceipt(ctx context.Context, req *tokenizerv1.GetErasureReceiptRequest) (*tokenizerv1.GetErasureReceiptResponse, error) {
	rec := audit.RecordFrom(ctx)
	rec.Items = 1
	if err := requireOp(ctx, policy.OpAuditVerify); err != nil {
		return nil, err
	}
	eng, err := x.h.App.Engine()
	if err != nil {
		return nil, err
	}
	digests, err := eng.SubjectAuditDigests(req.GetSubject())
	if err != nil {
		return nil, err
	}
	rcs, err := x.h.App.Receipts(ctx, digests)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "audit log unavailable")
	}
	resp := &tokenizerv1.GetErasureReceiptResponse{}
	for _, rc := range rcs {
		out, err := receiptProto(rc)
		if err != nil {
			return nil, err
		}
		resp.Receipts = append(resp.Receipts, out)
	}
	return resp, nil
}

// receiptProto converts a receipt for the API.
func receiptProto(rc audit.Receipt) (*tokenizerv1.ErasureReceipt, error) {
	d, err := audit.Decode(rc.Event)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "receipt event does not decode")
	}
	doc, err := audit.MarshalReceipt(rc)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "receipt does not encode")
	}
	out := &tokenizerv1.ErasureReceipt{
		Seq: d.Seq, Caller: d.Caller, Reason: d.Justification, Erased: d.Erased,
		CheckpointSeq: rc.Checkpoint.Seq, ReceiptJson: doc,
	}
	if len(d.SubjectDigests) > 0 {
		out.SubjectDigest = d.SubjectDigests[0]
	}
	if t, err := time.Parse(audit.TimeLayout, d.Time); err == nil {
		out.Time = timestamppb.New(t)
	}
	return out, nil
}

// disclosureDigests are the audit digests a ListDisclosures or ExportDisclosures
// request asks about: a token's, or a subject's.
func disclosureDigests(eng *tokenizer.Engine, class, token, subject string) ([][]byte, error) {
	switch {
	case subject != "" && (class != "" || token != ""):
		return nil, errs.New(errs.InvalidArgument, "subject: give either subject, or class and token")
	case subject != "":
		return eng.SubjectAuditDigests(subject)
	}
	return eng.AuditDigests(class, token)
}

// accountingRange reads and checks the optional time range of an accounting.
func accountingRange(start, end *timestamppb.Timestamp) (time.Time, time.Time, error) {
	var s, e time.Time
	if start != nil {
		s = start.AsTime()
	}
	if end != nil {
		e = end.AsTime()
	}
	if err := audit.CheckRange(s, e); err != nil {
		return s, e, errs.New(errs.InvalidArgument, "%s", err.Error())
	}
	return s, e, nil
}

func (a *auditService) ExportDisclosures(req *tokenizerv1.ExportDisclosuresRequest, stream tokenizerv1.AuditService_ExportDisclosuresServer) error {
	f, ok := exportFormats[req.GetFormat()]
	if !ok || f == audit.JSONL {
		return errs.New(errs.InvalidArgument, "format: want EXPORT_FORMAT_CSV or EXPORT_FORMAT_FHIR")
	}
	start, end, err := accountingRange(req.GetStartTime(), req.GetEndTime())
	if err != nil {
		return err
	}
	if err := requireOp(stream.Context(), policy.OpDisclosures); err != nil {
		return err
	}
	eng, err := a.h.App.Engine()
	if err != nil {
		return err
	}
	if req.GetSubject() == "" {
		return errs.New(errs.InvalidArgument, "subject: required")
	}
	digests, err := eng.SubjectAuditDigests(req.GetSubject())
	if err != nil {
		return err
	}
	// The export is itself audited, before any event leaves.
	err = a.h.Transport.Message(stream.Context(), "export_disclosures", func(ctx context.Context) error {
		audit.RecordFrom(ctx).SubjectDigests = digests[len(digests)-1:]
		return nil
	})
	if err != nil {
		return err
	}
	w := &chunkWriter{stream: stream, contentType: f.ContentType()}
	if err := audit.ExportDisclosures(stream.Context(), a.h.App.Store, digests, start, end, f, w); err != nil {
		return errs.Wrap(errs.Unavailable, err, "audit log unavailable")
	}
	return w.flush()
}
