package audit_test

import (
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/audit"
)

// chainOf appends evs through a real Writer and returns the in-memory chain.
func chainOf(t *testing.T, evs ...*audit.Event) *memChain {
	t.Helper()
	c := &memChain{}
	w := audit.NewWriter(c, quiet, 5*time.Second)
	defer w.Close()
	for _, ev := range evs {
		require.NoError(t, w.Append(t.Context(), ev))
	}
	return c
}

func TestFormatContentType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		f    audit.Format
		want string
	}{
		{audit.JSONL, "application/jsonl"},
		{audit.CSV, "text/csv; charset=utf-8"},
		{audit.FHIR, "application/fhir+json"},
	}
	for _, tt := range tests {
		t.Run(string(tt.f), func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, tt.f.ContentType())
		})
	}
	err := audit.Export(t.Context(), &memChain{}, audit.Format("xml"), 1, 0, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown export format "xml"`)
}

func TestExportJSONL(t *testing.T) {
	t.Parallel()
	c := chainOf(t, event(0), event(1), event(2))
	var out bytes.Buffer
	require.NoError(t, audit.Export(t.Context(), c, audit.JSONL, 2, 3, &out))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 2, "from 2 to 3")
	for i, line := range lines {
		r := c.rows[i+1]
		want := `{"event":` + r.Body + `,"hash":"` + hex.EncodeToString(r.Hash) + `","prev_hash":"` + hex.EncodeToString(r.PrevHash) + `"}`
		assert.Equal(t, want, line, "the event member is the hashed body, byte for byte")
		var decoded struct {
			Event    json.RawMessage `json:"event"`
			Hash     string          `json:"hash"`
			PrevHash string          `json:"prev_hash"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &decoded))
		prev, err := hex.DecodeString(decoded.PrevHash)
		require.NoError(t, err)
		assert.Equal(t, decoded.Hash, hex.EncodeToString(audit.Hash(prev, decoded.Event)), "the chain recomputes from the export alone")
	}
}

func TestExportCSVGolden(t *testing.T) {
	t.Parallel()
	ev := &audit.Event{Time: time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC), RequestID: "r1", Caller: "svc",
		Operation: "detokenize", Classes: []string{"ssn", "mrn"}, Items: 2, Outcome: "PERMISSION_DENIED",
		Reason: `class "ssn", not allowed`, PurposeOfUse: "TREAT", Justification: "line 1\nline 2",
		ClientAddress: "10.0.0.1:5000", Masked: true, TokenDigests: [][]byte{{0xab}, {0xcd}}}
	c := chainOf(t, ev)
	r := c.rows[0]
	var out bytes.Buffer
	require.NoError(t, audit.Export(t.Context(), c, audit.CSV, 1, 0, &out))
	want := "seq,time,request_id,caller,operation,classes,items,items_failed,outcome,reason,purpose_of_use," +
		"justification,client_address,break_glass,masked,token_digests,prev_hash,hash,on_behalf_of\r\n" +
		`1,2026-11-21T08:00:00.000000Z,r1,svc,detokenize,mrn ssn,2,0,PERMISSION_DENIED,"class ""ssn"", not allowed",TREAT,` +
		"\"line 1\r\nline 2\",10.0.0.1:5000,false,true,ab cd," + hex.EncodeToString(r.PrevHash) + "," + hex.EncodeToString(r.Hash) + ",\r\n"
	assert.Equal(t, want, out.String())
}

func TestExportCSVDefusesFormulas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"equals", "=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"},
		{"plus", "+1+1", "'+1+1"},
		{"minus", "-2+3", "'-2+3"},
		{"at", "@SUM(A1)", "'@SUM(A1)"},
		{"tab", "\tx", "'\tx"},
		// Defused; encoding/csv with UseCRLF then drops a lone CR inside a quoted cell.
		{"carriage return", "\rx", "'x"},
		{"not at the start", "a=b", "a=b"},
		{"empty", "", ""},
		{"apostrophe already", "'=x", "'=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := chainOf(t, &audit.Event{Caller: tt.in, Reason: tt.in, Justification: tt.in, RequestID: tt.in})
			var out bytes.Buffer
			require.NoError(t, audit.Export(t.Context(), c, audit.CSV, 1, 0, &out))
			rows, err := csv.NewReader(&out).ReadAll()
			require.NoError(t, err, "RFC 4180: the export reads back")
			require.Len(t, rows, 2)
			header, row := rows[0], rows[1]
			for _, col := range []string{"request_id", "caller", "reason", "justification"} {
				i := indexOf(header, col)
				require.GreaterOrEqual(t, i, 0, col)
				assert.Equal(t, tt.want, row[i], col)
			}
		})
	}
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// fhirEvent is the part of a FHIR R4 AuditEvent the tests read.
type fhirEvent struct {
	ResourceType string    `json:"resourceType"`
	ID           string    `json:"id"`
	Type         fcoding   `json:"type"`
	Subtype      []fcoding `json:"subtype"`
	Action       string    `json:"action"`
	Recorded     string    `json:"recorded"`
	Outcome      string    `json:"outcome"`
	OutcomeDesc  string    `json:"outcomeDesc"`
	Purpose      []struct {
		Coding []fcoding `json:"coding"`
		Text   string    `json:"text"`
	} `json:"purposeOfEvent"`
	Agent []struct {
		Type      struct{ Coding []fcoding } `json:"type"`
		Who       fref                       `json:"who"`
		Requestor bool                       `json:"requestor"`
		Network   *struct {
			Address string `json:"address"`
			Type    string `json:"type"`
		} `json:"network"`
	} `json:"agent"`
	Source struct {
		Observer fref      `json:"observer"`
		Type     []fcoding `json:"type"`
	} `json:"source"`
	Entity []struct {
		What      fref     `json:"what"`
		Type      fcoding  `json:"type"`
		Lifecycle *fcoding `json:"lifecycle"`
		Detail    []struct {
			Type        string `json:"type"`
			ValueString string `json:"valueString"`
		} `json:"detail"`
	} `json:"entity"`
}

type fcoding struct {
	System, Code, Display string
}

type fref struct {
	Identifier *struct{ System, Value string } `json:"identifier"`
	Display    string                          `json:"display"`
}

func toFHIR(t *testing.T, r auditRow) fhirEvent {
	t.Helper()
	res, err := audit.ToFHIR(r)
	require.NoError(t, err)
	b, err := json.Marshal(res)
	require.NoError(t, err)
	var ev fhirEvent
	require.NoError(t, json.Unmarshal(b, &ev))
	return ev
}

func TestToFHIROperations(t *testing.T) {
	t.Parallel()
	const (
		dcm       = "http://dicom.nema.org/resources/ontology/DCM"
		evType    = "http://terminology.hl7.org/CodeSystem/audit-event-type"
		rest      = "http://hl7.org/fhir/restful-interaction"
		lifecycle = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
	)
	tests := []struct {
		op        string
		typ       fcoding
		subtype   string
		action    string
		lifecycle string // "" for none
	}{
		{"detokenize", fcoding{dcm, "110106", "Export"}, "read", "R", "reidentify"},
		{"detokenize_stream", fcoding{dcm, "110106", "Export"}, "read", "R", "reidentify"},
		{"tokenize", fcoding{evType, "rest", "RESTful Operation"}, "create", "C", "pseudonymize"},
		{"tokenize_stream", fcoding{evType, "rest", "RESTful Operation"}, "create", "C", "pseudonymize"},
		{"delete_tokens", fcoding{evType, "rest", "RESTful Operation"}, "delete", "D", "destroy"},
		{"list_classes", fcoding{evType, "rest", "RESTful Operation"}, "operation", "E", ""},
		{"export_audit", fcoding{evType, "rest", "RESTful Operation"}, "operation", "E", ""},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			t.Parallel()
			c := chainOf(t, &audit.Event{Operation: tt.op, Outcome: "OK", Items: 2, TokenDigests: [][]byte{{1}, {2}}})
			ev := toFHIR(t, c.rows[0])
			assert.Equal(t, tt.typ, ev.Type)
			require.Len(t, ev.Subtype, 1)
			assert.Equal(t, fcoding{rest, tt.subtype, tt.subtype}, ev.Subtype[0])
			assert.Equal(t, tt.action, ev.Action)
			require.Len(t, ev.Entity, 3, "the event's own entity, then one per token digest")
			for _, e := range ev.Entity {
				if tt.lifecycle == "" {
					assert.Nil(t, e.Lifecycle)
					continue
				}
				require.NotNil(t, e.Lifecycle)
				assert.Equal(t, lifecycle, e.Lifecycle.System)
				assert.Equal(t, tt.lifecycle, e.Lifecycle.Code)
			}
			assert.Equal(t, "urn:tokenizer:token-digest", ev.Entity[1].What.Identifier.System)
			assert.Equal(t, "01", ev.Entity[1].What.Identifier.Value)
			assert.Equal(t, "02", ev.Entity[2].What.Identifier.Value)
			assert.Equal(t, "2", ev.Entity[1].Type.Code, "a token is a system object")
		})
	}
}

func TestToFHIROutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code, reason, outcome, desc string
	}{
		{"OK", "", "0", ""},
		{"PERMISSION_DENIED", "class ssn: detokenize", "4", "PERMISSION_DENIED class ssn: detokenize"},
		{"INVALID_ARGUMENT", "", "4", "INVALID_ARGUMENT"},
		{"NOT_FOUND", "", "4", "NOT_FOUND"},
		{"UNAUTHENTICATED", "", "4", "UNAUTHENTICATED"},
		{"RESOURCE_EXHAUSTED", "", "4", "RESOURCE_EXHAUSTED"},
		{"FAILED_PRECONDITION", "", "4", "FAILED_PRECONDITION"},
		{"CANCELLED", "", "4", "CANCELLED"},
		{"ABORTED", "", "4", "ABORTED"},
		{"UNAVAILABLE", "vault", "8", "UNAVAILABLE vault"},
		{"INTERNAL", "", "8", "INTERNAL"},
		{"DEADLINE_EXCEEDED", "", "8", "DEADLINE_EXCEEDED"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			c := chainOf(t, &audit.Event{Operation: "tokenize", Outcome: tt.code, Reason: tt.reason})
			ev := toFHIR(t, c.rows[0])
			assert.Equal(t, tt.outcome, ev.Outcome)
			assert.Equal(t, tt.desc, ev.OutcomeDesc)
		})
	}
}

func TestToFHIRFields(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 11, 21, 8, 0, 0, 5000, time.UTC)
	tests := []struct {
		name        string
		ev          audit.Event
		purpose     string // "" for no purposeOfEvent
		text        string
		network     string // "" for no network
		classesText string
	}{
		{"purpose, justification, IPv4", audit.Event{PurposeOfUse: "ETREAT", Justification: "code blue",
			ClientAddress: "10.1.2.3:443", Classes: []string{"ssn", "mrn"}}, "ETREAT", "code blue", "10.1.2.3", "mrn ssn"},
		{"IPv6 with port", audit.Event{ClientAddress: "[2001:db8::1]:8443"}, "", "", "2001:db8::1", "-"},
		{"address without port", audit.Event{ClientAddress: "192.0.2.9"}, "", "", "192.0.2.9", "-"},
		{"no address", audit.Event{}, "", "", "", "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.ev
			in.Time, in.Caller, in.RequestID, in.Operation, in.Outcome, in.Items = ts, "spiffe://x/y", "req-9", "detokenize", "OK", 4
			c := chainOf(t, event(0), &in)
			r := c.rows[1]
			ev := toFHIR(t, r)
			assert.Equal(t, "AuditEvent", ev.ResourceType)
			assert.Equal(t, "tokenizer-audit-2", ev.ID)
			assert.Equal(t, "2026-11-21T08:00:00.000005Z", ev.Recorded)
			if tt.purpose == "" {
				assert.Empty(t, ev.Purpose)
			} else {
				require.Len(t, ev.Purpose, 1)
				assert.Equal(t, []fcoding{{"http://terminology.hl7.org/CodeSystem/v3-ActReason", tt.purpose, ""}}, ev.Purpose[0].Coding)
				assert.Equal(t, tt.text, ev.Purpose[0].Text)
			}
			require.Len(t, ev.Agent, 1)
			a := ev.Agent[0]
			assert.True(t, a.Requestor)
			require.NotNil(t, a.Who.Identifier)
			assert.Equal(t, "urn:tokenizer:caller", a.Who.Identifier.System)
			assert.Equal(t, "spiffe://x/y", a.Who.Identifier.Value)
			assert.Equal(t, "dataprocessor", a.Type.Coding[0].Code)
			if tt.network == "" {
				assert.Nil(t, a.Network)
			} else {
				require.NotNil(t, a.Network)
				assert.Equal(t, tt.network, a.Network.Address)
				assert.Equal(t, "2", a.Network.Type, "IP address")
			}
			assert.Equal(t, "tokenizer", ev.Source.Observer.Display)
			assert.Equal(t, "4", ev.Source.Type[0].Code)
			require.NotEmpty(t, ev.Entity)
			self := ev.Entity[0]
			assert.Equal(t, "urn:tokenizer:audit-seq", self.What.Identifier.System)
			assert.Equal(t, "2", self.What.Identifier.Value)
			details := map[string]string{}
			for _, d := range self.Detail {
				details[d.Type] = d.ValueString
			}
			assert.Equal(t, map[string]string{"request_id": "req-9", "classes": tt.classesText, "items": "4",
				"hash": hex.EncodeToString(r.Hash), "prev_hash": hex.EncodeToString(r.PrevHash)}, details)
		})
	}
}

func TestToFHIRRejectsABadBody(t *testing.T) {
	t.Parallel()
	_, err := audit.ToFHIR(auditRow{Seq: 12, Body: "123-45-6789 not json"})
	require.Error(t, err)
	assert.Equal(t, "event 12: body is not JSON", err.Error(), "names the event, not its content")

	c := &memChain{rows: []auditRow{{Seq: 1, Body: "{"}}}
	for _, f := range []audit.Format{audit.CSV, audit.FHIR} {
		err := audit.Export(t.Context(), c, f, 1, 0, &bytes.Buffer{})
		require.Error(t, err, f)
		assert.Contains(t, err.Error(), "event 1: body is not JSON")
	}
}

func TestExportFHIRBundle(t *testing.T) {
	t.Parallel()
	c := chainOf(t, event(0), event(1), event(2))
	var out bytes.Buffer
	require.NoError(t, audit.Export(t.Context(), c, audit.FHIR, 1, 0, &out))
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			FullURL  string    `json:"fullUrl"`
			Resource fhirEvent `json:"resource"`
		} `json:"entry"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &bundle))
	assert.Equal(t, "Bundle", bundle.ResourceType)
	assert.Equal(t, "collection", bundle.Type)
	require.Len(t, bundle.Entry, 3)
	for i, e := range bundle.Entry {
		seq := string(rune('1' + i))
		assert.Equal(t, "urn:tokenizer:audit:"+seq, e.FullURL)
		assert.Equal(t, "tokenizer-audit-"+seq, e.Resource.ID)
	}

	out.Reset()
	require.NoError(t, audit.Export(t.Context(), &memChain{}, audit.FHIR, 1, 0, &out))
	assert.Equal(t, "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[]}\n", out.String(), "an empty range is an empty bundle")
}
