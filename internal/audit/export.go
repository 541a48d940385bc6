package audit

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// Decoded is an event read back from its canonical body.
type Decoded struct {
	BreakGlass    bool     `json:"break_glass"`
	Caller        string   `json:"caller"`
	Classes       []string `json:"classes"`
	ClientAddress string   `json:"client_address"`
	Items         int      `json:"items"`
	ItemsFailed   int      `json:"items_failed"`
	Justification string   `json:"justification"`
	Masked        bool     `json:"masked"`
	Operation     string   `json:"operation"`
	Outcome       string   `json:"outcome"`
	PurposeOfUse  string   `json:"purpose_of_use"`
	Reason        string   `json:"reason"`
	RequestID     string   `json:"request_id"`
	Seq           int64    `json:"seq"`
	Time          string   `json:"time"`
	TokenDigests  []string `json:"token_digests"`
	Version       int      `json:"version"`
	// SubjectDigests and Erased are present only in events that carry them.
	SubjectDigests []string         `json:"subject_digests,omitempty"`
	Erased         map[string]int64 `json:"erased,omitempty"`
	Grants         []string         `json:"grants,omitempty"`
	OnBehalfOf     string           `json:"on_behalf_of,omitempty"`
}

// Decode parses a canonical body.
func Decode(body string) (Decoded, error) {
	var d Decoded
	err := json.Unmarshal([]byte(body), &d)
	return d, err
}

// Format is an export encoding.
type Format string

// Export formats.
const (
	JSONL Format = "jsonl"
	CSV   Format = "csv"
	FHIR  Format = "fhir"
)

// ContentType is the media type of an export.
func (f Format) ContentType() string {
	switch f {
	case CSV:
		return "text/csv; charset=utf-8"
	case FHIR:
		return "application/fhir+json"
	}
	return "application/jsonl"
}

// Export writes the events with from ≤ seq ≤ to in format f.
func Export(ctx context.Context, st ChainReader, f Format, from, to int64, w io.Writer) error {
	switch f {
	case JSONL:
		return st.ReadAudit(ctx, from, to, func(r Row) error {
			// Keys in byte order and the body verbatim, so the line is canonical too.
			_, err := fmt.Fprintf(w, "{\"event\":%s,\"hash\":\"%x\",\"prev_hash\":\"%x\"}\n", r.Body, r.Hash, r.PrevHash)
			return err
		})
	case CSV:
		return exportCSV(ctx, st, from, to, w)
	case FHIR:
		return exportFHIR(ctx, st, from, to, w)
	}
	return fmt.Errorf("unknown export format %q", f)
}

var csvHeader = []string{"seq", "time", "request_id", "caller", "operation", "classes", "items", "items_failed",
	"outcome", "reason", "purpose_of_use", "justification", "client_address", "break_glass", "masked",
	"token_digests", "prev_hash", "hash", "on_behalf_of"}

// csvCell defuses spreadsheet formulas: a cell starting with = + - @, tab or CR gets a
// leading apostrophe (OWASP's advice for CSV injection).
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func exportCSV(ctx context.Context, st ChainReader, from, to int64, w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true // RFC 4180
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	err := st.ReadAudit(ctx, from, to, func(r Row) error {
		d, err := Decode(r.Body)
		if err != nil {
			return fmt.Errorf("event %d: body is not JSON", r.Seq)
		}
		rec := []string{
			strconv.FormatInt(r.Seq, 10), d.Time, d.RequestID, d.Caller, d.Operation, strings.Join(d.Classes, " "),
			strconv.Itoa(d.Items), strconv.Itoa(d.ItemsFailed), d.Outcome, d.Reason, d.PurposeOfUse, d.Justification,
			d.ClientAddress, strconv.FormatBool(d.BreakGlass), strconv.FormatBool(d.Masked),
			strings.Join(d.TokenDigests, " "), hex.EncodeToString(r.PrevHash), hex.EncodeToString(r.Hash), d.OnBehalfOf,
		}
		for i := range rec {
			rec[i] = csvCell(rec[i])
		}
		return cw.Write(rec)
	})
	cw.Flush()
	if err != nil {
		return err
	}
	return cw.Error()
}

// FHIR R4 codes used by the AuditEvent export.
const (
	dcmSystem       = "http://dicom.nema.org/resources/ontology/DCM"
	eventTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	interactionSys  = "http://hl7.org/fhir/restful-interaction"
	lifecycleSystem = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
	actReasonSystem = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	sourceSystem    = "http://terminology.hl7.org/CodeSystem/security-source-type"
	entityTypeSys   = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	roleTypeSystem  = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
)

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type codeableConcept struct {
	Coding []coding `json:"coding"`
	Text   string   `json:"text,omitempty"`
}

type identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

type reference struct {
	Identifier *identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

type network struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type agent struct {
	Type      *codeableConcept `json:"type,omitempty"`
	Who       reference        `json:"who"`
	Requestor bool             `json:"requestor"`
	Network   *network         `json:"network,omitempty"`
}

type source struct {
	Observer reference `json:"observer"`
	Type     []coding  `json:"type"`
}

type entityDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

type entity struct {
	What      reference      `json:"what"`
	Type      *coding        `json:"type,omitempty"`
	Role      *coding        `json:"role,omitempty"`
	Lifecycle *coding        `json:"lifecycle,omitempty"`
	Detail    []entityDetail `json:"detail,omitempty"`
}

type auditEvent struct {
	ResourceType   string            `json:"resourceType"`
	ID             string            `json:"id"`
	Type           coding            `json:"type"`
	Subtype        []coding          `json:"subtype,omitempty"`
	Action         string            `json:"action"`
	Recorded       string            `json:"recorded"`
	Outcome        string            `json:"outcome"`
	OutcomeDesc    string            `json:"outcomeDesc,omitempty"`
	PurposeOfEvent []codeableConcept `json:"purposeOfEvent,omitempty"`
	Agent          []agent           `json:"agent"`
	Source         source            `json:"source"`
	Entity         []entity          `json:"entity"`
}

// fhirOutcome maps a gRPC code to AuditEvent.outcome: 0 success, 4 minor failure
// (the request was refused), 8 serious failure (the service failed).
func fhirOutcome(code string) string {
	switch code {
	case "OK":
		return "0"
	case "INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "CANCELLED", "ABORTED":
		return "4"
	}
	return "8"
}

// ToFHIR maps one event to a FHIR R4 AuditEvent. Detokenize is DICOM 110106 Export,
// subtype read, and each revealed token's entity carries the ISO 21089 lifecycle event
// re-identify (R4 puts lifecycle on AuditEvent.entity); tokenize is a RESTful create
// (pseudonymize); deletions delete (destroy).
func ToFHIR(r Row) (any, error) {
	d, err := Decode(r.Body)
	if err != nil {
		return nil, fmt.Errorf("event %d: body is not JSON", r.Seq)
	}
	ev := auditEvent{
		ResourceType: "AuditEvent",
		ID:           "tokenizer-audit-" + strconv.FormatInt(r.Seq, 10),
		Type:         coding{System: eventTypeSystem, Code: "rest", Display: "RESTful Operation"},
		Action:       "E",
		Recorded:     d.Time,
		Outcome:      fhirOutcome(d.Outcome),
		Source: source{
			Observer: reference{Display: "tokenizer"},
			Type:     []coding{{System: sourceSystem, Code: "4", Display: "Application Server"}},
		},
	}
	if d.Outcome != "OK" {
		ev.OutcomeDesc = strings.TrimSpace(d.Outcome + " " + d.Reason)
	}
	var lifecycle *coding
	switch d.Operation {
	case "detokenize", "detokenize_stream", "detokenize_resources", "detokenize_resources_stream":
		ev.Type = coding{System: dcmSystem, Code: "110106", Display: "Export"}
		ev.Subtype = []coding{{System: interactionSys, Code: "read", Display: "read"}}
		ev.Action = "R"
		lifecycle = &coding{System: lifecycleSystem, Code: "reidentify", Display: "Re-identify"}
	case "tokenize", "tokenize_stream", "tokenize_resources", "tokenize_resources_stream":
		ev.Subtype = []coding{{System: interactionSys, Code: "create", Display: "create"}}
		ev.Action = "C"
		lifecycle = &coding{System: lifecycleSystem, Code: "pseudonymize", Display: "Pseudonymize"}
	case "delete_tokens":
		ev.Subtype = []coding{{System: interactionSys, Code: "delete", Display: "delete"}}
		ev.Action = "D"
		lifecycle = &coding{System: lifecycleSystem, Code: "destroy", Display: "Destroy"}
	default:
		ev.Subtype = []coding{{System: interactionSys, Code: "operation", Display: "operation"}}
	}
	if d.PurposeOfUse != "" {
		ev.PurposeOfEvent = []codeableConcept{{Coding: []coding{{System: actReasonSystem, Code: d.PurposeOfUse}}, Text: d.Justification}}
	}
	a := agent{
		Type:      &codeableConcept{Coding: []coding{{System: roleTypeSystem, Code: "dataprocessor", Display: "data processor"}}},
		Who:       reference{Identifier: &identifier{System: "urn:tokenizer:caller", Value: d.Caller}},
		Requestor: true,
	}
	if host := hostOf(d.ClientAddress); host != "" {
		a.Network = &network{Address: host, Type: "2"}
	}
	ev.Agent = []agent{a}
	if d.OnBehalfOf != "" {
		// The end user the caller acted for, as the caller asserted it.
		ev.Agent = append(ev.Agent, agent{
			Type:      &codeableConcept{Coding: []coding{{System: roleTypeSystem, Code: "humanuser", Display: "human user"}}},
			Who:       reference{Display: d.OnBehalfOf},
			Requestor: false,
		})
	}
	ev.Entity = append(ev.Entity, entity{
		What:      reference{Identifier: &identifier{System: "urn:tokenizer:audit-seq", Value: strconv.FormatInt(r.Seq, 10)}},
		Type:      &coding{System: entityTypeSys, Code: "4", Display: "Other"},
		Lifecycle: lifecycle,
		Detail: []entityDetail{
			{Type: "request_id", ValueString: d.RequestID},
			{Type: "classes", ValueString: orDash(strings.Join(d.Classes, " "))},
			{Type: "items", ValueString: strconv.Itoa(d.Items)},
			{Type: "hash", ValueString: hex.EncodeToString(r.Hash)},
			{Type: "prev_hash", ValueString: hex.EncodeToString(r.PrevHash)},
		},
	})
	if len(d.Grants) > 0 {
		ev.Entity[0].Detail = append(ev.Entity[0].Detail, entityDetail{Type: "grants", ValueString: strings.Join(d.Grants, " ")})
	}
	for _, dg := range d.SubjectDigests {
		ev.Entity = append(ev.Entity, subjectEntity(dg))
	}
	for _, dg := range d.TokenDigests {
		ev.Entity = append(ev.Entity, entity{
			What:      reference{Identifier: &identifier{System: "urn:tokenizer:token-digest", Value: dg}},
			Type:      &coding{System: entityTypeSys, Code: "2", Display: "System Object"},
			Lifecycle: lifecycle,
		})
	}
	return ev, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func hostOf(addr string) string {
	if addr == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func exportFHIR(ctx context.Context, st ChainReader, from, to int64, w io.Writer) error {
	if _, err := io.WriteString(w, `{"resourceType":"Bundle","type":"collection","entry":[`); err != nil {
		return err
	}
	first := true
	err := st.ReadAudit(ctx, from, to, func(r Row) error {
		res, err := ToFHIR(r)
		if err != nil {
			return err
		}
		b, err := json.Marshal(map[string]any{"fullUrl": "urn:tokenizer:audit:" + strconv.FormatInt(r.Seq, 10), "resource": res})
		if err != nil {
			return err
		}
		if !first {
			if _, err := io.WriteString(w, ","); err != nil {
				return err
			}
		}
		first = false
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "]}\n")
	return err
}
