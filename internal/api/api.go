// Package api is the tokenizer.v1 services: each handler converts proto messages to
// domain calls (internal/app) and back, and nothing else. Authentication, limits,
// deadlines and audit are the server's chain around them; a stream message goes
// through the server too (Transport.Message), so that it is authorized and audited like
// a unary call.
package api

import (
	"context"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"

	"github.com/phivault/tokenizer/internal/admin"
	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/grpcx"
	"github.com/phivault/tokenizer/internal/policy"
)

// Transport is what the handlers need of the server around them.
type Transport interface {
	// Status is the google.rpc.Status of an error (the server's one mapping).
	Status(ctx context.Context, err error) *spb.Status
	// Message runs handle as one request of its own: authorized against the policy in
	// force, counted by the caller's rate, and audited (op) before it returns.
	Message(ctx context.Context, op string, handle func(context.Context) error) error
	// IdleTimeout is how long a stream may send nothing.
	IdleTimeout() time.Duration
}

// Handlers serve the tokenizer.v1 services.
type Handlers struct {
	App       *app.App
	Metrics   *admin.Metrics
	Transport Transport
}

// Register registers every service on g.
func (h *Handlers) Register(g *grpc.Server) {
	tokenizerv1.RegisterTokenizerServiceServer(g, &tokenizerService{h: h})
	tokenizerv1.RegisterAuditServiceServer(g, &auditService{h: h})
	tokenizerv1.RegisterFhirServiceServer(g, &fhirService{h: h})
	tokenizerv1.RegisterSubjectServiceServer(g, &subjectService{h: h})
	tokenizerv1.RegisterGrantServiceServer(g, &grantService{h: h})
}

// Services are the service descriptors Register serves.
var Services = []grpc.ServiceDesc{
	tokenizerv1.TokenizerService_ServiceDesc, tokenizerv1.AuditService_ServiceDesc, tokenizerv1.FhirService_ServiceDesc,
	tokenizerv1.SubjectService_ServiceDesc, tokenizerv1.GrantService_ServiceDesc,
}

// itemStatus is the per-item status of an item error (nil for none).
func (h *Handlers) itemStatus(ctx context.Context, err error) *spb.Status {
	if err == nil {
		return nil
	}
	return h.Transport.Status(ctx, err)
}

// countItems records per-item outcomes in the audit record and the items metric.
func (h *Handlers) countItems(ctx context.Context, op string, classes []string, statuses []*spb.Status) {
	rec := audit.RecordFrom(ctx)
	for i, c := range classes {
		outcome := "OK"
		if st := statuses[i]; st != nil {
			rec.ItemsFailed++
			outcome = codeString(st.GetCode())
		}
		h.Metrics.Items.WithLabelValues(op, h.App.ClassLabel(c), outcome).Inc()
	}
}

// callerID is the caller's identity for messages (an identity is not PHI).
func callerID(ctx context.Context) string {
	c, _ := policy.CallerFrom(ctx)
	return c.ID
}

// requireOp authorizes a request operation (audit export, verify, disclosures).
func requireOp(ctx context.Context, op string) error {
	return policy.Decide(policy.Request{Principal: policy.PrincipalFrom(ctx), Caller: callerID(ctx), Operation: op}).Err
}

// requirePrincipal refuses callers with no policy entry.
func requirePrincipal(ctx context.Context) error {
	if policy.PrincipalFrom(ctx) == nil {
		return errs.New(errs.PermissionDenied, "caller %s has no entry in the policy", callerID(ctx))
	}
	return nil
}

// batchStream is a bidirectional stream of batches.
type batchStream[Req, Resp any] interface {
	Context() context.Context
	Recv() (*Req, error)
	Send(*Resp) error
}

// serveBatches answers each batch of a stream in order, each as a request of its own
// (Transport.Message): authorized, limited, audited before its response is sent.
func serveBatches[Req, Resp any](h *Handlers, stream batchStream[Req, Resp], op string, handle func(context.Context, *Req) (*Resp, error)) error {
	for {
		req, err := grpcx.RecvIdle(stream.Context(), stream.Recv, h.Transport.IdleTimeout())
		if err != nil {
			return endOfStream(err)
		}
		var resp *Resp
		if err := h.Transport.Message(stream.Context(), op, func(ctx context.Context) error {
			var err error
			resp, err = handle(ctx, req)
			return err
		}); err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
