package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/errs"
	"github.com/phivault/tokenizer/internal/fhir"
	"github.com/phivault/tokenizer/internal/policy"
	"github.com/phivault/tokenizer/internal/tokenizer"
)

// FHIRProfiles compiles the presets and the configured profiles. Preset classes are
// checked when a request uses the preset (a deployment without the fhir_* classes still
// starts); configured profiles are checked now, against the configured classes.
func FHIRProfiles(cfg *config.Config, isClass func(string) bool) (*fhir.Registry, error) {
	var custom []*fhir.Profile
	if !cfg.FHIR.Profiles.IsZero() {
		data, err := yaml.Marshal(&cfg.FHIR.Profiles)
		if err != nil {
			return nil, fmt.Errorf("fhir.profiles: %w", err)
		}
		if custom, err = fhir.ParseProfiles(data, classCheck(isClass)); err != nil {
			return nil, fmt.Errorf("fhir.%w", err)
		}
	}
	return fhir.NewRegistry(custom, nil)
}

func classCheck(isClass func(string) bool) fhir.ClassCheck {
	return func(class string) error {
		if !isClass(class) {
			return fmt.Errorf("not a configured class")
		}
		return nil
	}
}

// FHIRRequest is one de- or re-identification request.
type FHIRRequest struct {
	Profile                string
	Reverse                bool
	Purpose, Justification string // re-identification only
}

// FHIR returns the processor of a request: the profile, the engine behind the caller's
// authorization per item (policy.Decide, as Tokenize and Detokenize), and the
// subjects' stored date shifts. It records the purpose for the request's audit event.
func (a *App) FHIR(ctx context.Context, req FHIRRequest) (*fhir.Processor, error) {
	rec := audit.RecordFrom(ctx)
	if req.Reverse {
		recordPurpose(rec, req.Purpose, req.Justification)
	}
	eng, err := a.Engine()
	if err != nil {
		return nil, err
	}
	prof, err := a.FHIRRegistry.Lookup(req.Profile)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, c := range prof.Classes() {
		if !a.IsClass(c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, errs.New(errs.FailedPrecondition, "profile %q uses classes that are not configured: %v", prof.Name, missing)
	}
	if req.Reverse {
		// Purpose and justification are checked before any work, as on Detokenize.
		d := policy.Decide(a.decision(ctx, policy.OpDetokenize, nil, req.Purpose, req.Justification))
		if d.Err != nil {
			return nil, d.Err
		}
	}
	tok := &fhirTokens{a: a, eng: eng, purpose: req.Purpose, justification: req.Justification}
	offs := &fhirOffsets{a: a, eng: eng}
	return fhir.NewProcessor(prof, tok, offs, nil), nil
}

func (a *App) decision(ctx context.Context, op string, classes []string, purpose, justification string) policy.Request {
	caller, _ := policy.CallerFrom(ctx)
	return policy.Request{
		Principal: policy.PrincipalFrom(ctx), Caller: caller.ID, Operation: op, Classes: classes,
		Known: a.IsClass, Purpose: purpose, Justification: justification,
	}
}

// RecordFHIR puts a request's report in its audit record: resources, failures, the
// classes touched and (digested) the patients.
func RecordFHIR(ctx context.Context, rep *fhir.Report) {
	rec := audit.RecordFrom(ctx)
	rec.Items += rep.Resources + len(rep.Errors)
	rec.ItemsFailed += len(rep.Errors)
	for c := range rep.Classes {
		if !slices.Contains(rec.Classes, c) {
			rec.Classes = append(rec.Classes, c)
		}
	}
	slices.Sort(rec.Classes)
}

// fhirTokens is the token service a FHIR request sees.
type fhirTokens struct {
	a                      *App
	eng                    *tokenizer.Engine
	purpose, justification string
}

func chunks[T any](items []T, n int) [][]T {
	var out [][]T
	for n > 0 && len(items) > n {
		out, items = append(out, items[:n]), items[n:]
	}
	return append(out, items)
}

// authorized decides op for the items' classes once, hands each refused item to deny,
// and runs the permitted ones in chunks the engine accepts.
func (t *fhirTokens) authorized(ctx context.Context, items []fhir.Item, op string, deny func(i int, err error), run func(part []int, d policy.Decision) error) error {
	classes := make([]string, len(items))
	for i, it := range items {
		classes[i] = it.Class
	}
	d := policy.Decide(t.a.decision(ctx, op, classes, t.purpose, t.justification))
	if d.Err != nil {
		return d.Err
	}
	rec := audit.RecordFrom(ctx)
	rec.Denied = append(rec.Denied, d.Denied...)
	var allowed []int
	for i, it := range d.Items {
		if it.Effect == policy.Deny {
			deny(i, it.Err)
			continue
		}
		allowed = append(allowed, i)
	}
	for _, part := range chunks(allowed, t.a.Config.Limits.MaxItems) {
		if len(part) > 0 {
			if err := run(part, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// Tokenize authorizes the items' classes and tokenizes the permitted ones; a refused
// item fails its resource.
func (t *fhirTokens) Tokenize(ctx context.Context, items []fhir.Item) ([]fhir.Tokenized, error) {
	out := make([]fhir.Tokenized, len(items))
	err := t.authorized(ctx, items, policy.OpTokenize, func(i int, err error) { out[i].Err = err }, func(part []int, _ policy.Decision) error {
		sub := make([]tokenizer.TokenizeItem, len(part))
		for k, i := range part {
			sub[k] = tokenizer.TokenizeItem{Class: items[i].Class, Value: items[i].Value}
			if (items[i].ID || items[i].Bound) && t.eng.SubjectBound(items[i].Class) {
				// The Patient's id and references to it are the patient's, and so are the
				// values of rules with subject: patient: erasing the patient makes them
				// unrevealable. Other values are not bound: a bound static token is per
				// patient, and short values many patients share ("Mr.", a state) would
				// exhaust their token space.
				sub[k].Subject = items[i].Subject
			}
		}
		res, err := t.eng.Tokenize(ctx, sub, 0)
		rec := audit.RecordFrom(ctx)
		for k, i := range part {
			if err == nil {
				out[i] = fhir.Tokenized{Token: res[k].Token, Err: res[k].Err}
				if res[k].SubjectDigest != nil && res[k].Err == nil {
					rec.SubjectDigests = append(rec.SubjectDigests, res[k].SubjectDigest)
				}
			}
		}
		return err
	})
	return out, err
}

// Detokenize reveals each item as the caller may see its class: in full, masked, or
// not at all (the field stays tokenized and the response says so).
func (t *fhirTokens) Detokenize(ctx context.Context, items []fhir.Item) ([]fhir.Revealed, error) {
	out := make([]fhir.Revealed, len(items))
	rec := audit.RecordFrom(ctx)
	withhold := func(i int, _ error) { out[i].Outcome = fhir.RevealWithheld }
	err := t.authorized(ctx, items, policy.OpDetokenize, withhold, func(part []int, d policy.Decision) error {
		sub := make([]tokenizer.DetokenizeItem, len(part))
		for k, i := range part {
			sub[k] = tokenizer.DetokenizeItem{Class: items[i].Class, Token: items[i].Value}
		}
		res, err := t.eng.Detokenize(ctx, sub)
		for k, i := range part {
			if err == nil {
				out[i] = t.revealed(rec, items[i].Class, res[k], d.Items[i].Effect == policy.Mask)
			}
		}
		return err
	})
	return out, err
}

func (t *fhirTokens) revealed(rec *audit.Record, class string, r tokenizer.DetokenizeResult, masked bool) fhir.Revealed {
	if r.Err != nil {
		return fhir.Revealed{Err: r.Err}
	}
	rec.TokenDigests = append(rec.TokenDigests, r.Digest)
	if r.SubjectDigest != nil {
		rec.SubjectDigests = append(rec.SubjectDigests, r.SubjectDigest)
	}
	if masked {
		rec.Masked = true
		return fhir.Revealed{Value: t.eng.Mask(class, r.Value), Outcome: fhir.RevealMasked}
	}
	return fhir.Revealed{Value: r.Value, Outcome: fhir.RevealClear}
}

// Mask applies a class's mask rule.
func (t *fhirTokens) Mask(class, value string) (string, error) {
	if !t.a.IsClass(class) {
		return "", errs.New(errs.InvalidArgument, "class %s: unknown class", class)
	}
	return t.eng.Mask(class, value), nil
}

// fhirOffsets is the stored per-subject date shift.
type fhirOffsets struct {
	a   *App
	eng *tokenizer.Engine
}

// Offsets implements fhir.Offsets over the engine's sealed subject offsets.
func (o *fhirOffsets) Offsets(ctx context.Context, subjects []string, create bool) (map[string]int, error) {
	days := o.a.Config.FHIR.DateShiftDays
	return o.eng.SubjectOffsets(ctx, o.a.Store, subjects, create, func() (int, error) { return fhir.DrawOffset(days) })
}

// FHIROutcome is the outcome of one FHIR request: the resources in request order (nil
// where one failed) and the report's failures and unrestored paths, indexed by request
// resource.
type FHIROutcome struct {
	Resources  [][]byte
	Errors     []fhir.ResourceError
	Unrestored []fhir.Unrestored
}

// ProcessFHIR runs resources (each a resource or a Bundle, JSON) through the request's
// processor: lone resources in one batch, each Bundle streamed entry by entry; a resource
// that fails fails alone. It records the request for its audit event.
func (a *App) ProcessFHIR(ctx context.Context, req FHIRRequest, in [][]byte) (*FHIROutcome, error) {
	if len(in) == 0 {
		return nil, errs.New(errs.InvalidArgument, "resources: at least one is required")
	}
	p, err := a.FHIR(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &FHIROutcome{Resources: make([][]byte, len(in))}
	var lone [][]byte
	var at []int
	for i, r := range in {
		if !isBundle(r) {
			lone, at = append(lone, r), append(at, i)
			continue
		}
		var buf bytes.Buffer
		rep, err := runBundle(ctx, p, req.Reverse, r, &buf)
		if errs.KindOf(err) == errs.InvalidArgument {
			out.Errors = append(out.Errors, fhir.ResourceError{Index: i, ResourceType: "Bundle", Reason: err.Error()})
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Resources[i] = buf.Bytes()
		for k := range rep.Errors {
			rep.Errors[k].Path = entryPath(rep.Errors[k].Index, rep.Errors[k].Path)
		}
		for k := range rep.Unrestored {
			rep.Unrestored[k].Path = entryPath(rep.Unrestored[k].Index, rep.Unrestored[k].Path)
		}
		out.add(ctx, rep, func(int) int { return i })
	}
	if len(lone) > 0 {
		res, rep, err := p.Resources(ctx, lone, req.Reverse)
		if err != nil {
			return nil, err
		}
		for k, b := range res {
			out.Resources[at[k]] = b
		}
		out.add(ctx, rep, func(k int) int { return at[k] })
	}
	return out, nil
}

func runBundle(ctx context.Context, p *fhir.Processor, reverse bool, r []byte, w *bytes.Buffer) (*fhir.Report, error) {
	if reverse {
		return p.ReidentifyJSON(ctx, bytes.NewReader(r), w)
	}
	return p.DeidentifyJSON(ctx, bytes.NewReader(r), w)
}

// entryPath names a place inside entry k of a Bundle (the errors of a Bundle are
// indexed by the request's resource, so the path says which entry): Patient.birthdate
// of entry 3 is Bundle.entry[3].resource.birthdate.
func entryPath(k int, path string) string {
	if strings.HasPrefix(path, "Bundle.") {
		return path
	}
	p := fmt.Sprintf("Bundle.entry[%d]", k)
	if path == "" {
		return p
	}
	if path[0] < 'A' || path[0] > 'Z' {
		return p + ".resource." + path // a rule's path: descendants()..., nodesByType(...)
	}
	if i := strings.IndexAny(path, ".["); i >= 0 {
		return p + ".resource" + path[i:] // Patient.birthDate: the type is the entry's
	}
	return p + ".resource"
}

// isBundle peeks at the resource type without trusting the rest of the document.
func isBundle(r []byte) bool {
	var probe struct {
		ResourceType string `json:"resourceType"`
	}
	return json.Unmarshal(r, &probe) == nil && probe.ResourceType == "Bundle"
}

// add records a processor report; index maps its resource index to the request's.
func (o *FHIROutcome) add(ctx context.Context, rep *fhir.Report, index func(int) int) {
	RecordFHIR(ctx, rep)
	for _, e := range rep.Errors {
		e.Index = index(e.Index)
		o.Errors = append(o.Errors, e)
	}
	for _, u := range rep.Unrestored {
		u.Index = index(u.Index)
		o.Unrestored = append(o.Unrestored, u)
	}
}
