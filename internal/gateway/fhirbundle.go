package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenizerv1 "github.com/phivault/tokenizer/proto/tokenizer/v1"
)

// A Bundle larger than the message limit is not refused: the gateway reads it one entry
// at a time and sends it in parts, each a Bundle of at most ndjsonBatch entries and half
// the limit in bytes, as the messages of one FhirService stream. The stream's scope links
// the parts as one Bundle (a urn:uuid reference to a Patient entry of an earlier part
// names that patient), each part is authorized and audited as a request of its own, and
// the answer is written as one Bundle while the request is still being read: memory
// holds one part, whatever the Bundle's size. Per-entry failures go in the trailers.

// errNotBundle refuses a body over the limit that is not a Bundle.
var errNotBundle = errors.New("request body exceeds the limit; only a Bundle can be larger (it is sent in parts), or send application/fhir+ndjson")

// errNotUTF8 refuses a body that is not UTF-8 (a gRPC string must be).
var errNotUTF8 = errors.New("request body: not valid UTF-8")

// errEntryTooLarge stops a Bundle whose single entry exceeds what one message can hold.
var errEntryTooLarge = errors.New("a Bundle entry is larger than half of limits.max_message_bytes (one part must hold it)")

// entryLimiter fails a read once more than limit bytes pass without reset: one entry
// (or top-level element) cannot make the decoder buffer an unbounded amount.
type entryLimiter struct {
	r     io.Reader
	n     int64
	limit int64
}

func (l *entryLimiter) Read(p []byte) (int, error) {
	if l.n > l.limit {
		return 0, errEntryTooLarge
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

// rawField is one top-level element of the Bundle, other than entry.
type rawField struct {
	key string
	val json.RawMessage
}

// partStream sends the parts of one Bundle and receives their answers.
type partStream interface {
	Send(part string) error
	Recv() (*tokenizerv1.ResourcesResponse, error)
	CloseSend() error
}

type tokenizeParts struct {
	tokenizerv1.FhirService_TokenizeResourcesStreamClient
	profile string
}

func (s tokenizeParts) Send(part string) error {
	return s.FhirService_TokenizeResourcesStreamClient.Send(&tokenizerv1.TokenizeResourcesRequest{Profile: s.profile, Resources: []string{part}})
}

type detokenizeParts struct {
	tokenizerv1.FhirService_DetokenizeResourcesStreamClient
	req *tokenizerv1.DetokenizeResourcesRequest
}

func (s detokenizeParts) Send(part string) error {
	req := &tokenizerv1.DetokenizeResourcesRequest{Profile: s.req.GetProfile(), PurposeOfUse: s.req.GetPurposeOfUse(), Justification: s.req.GetJustification(), Resources: []string{part}}
	return s.FhirService_DetokenizeResourcesStreamClient.Send(req)
}

func (h *fhirHandler) openParts(ctx context.Context, q map[string][]string) (partStream, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if h.reverse {
		s, err := h.client.DetokenizeResourcesStream(ctx)
		return detokenizeParts{s, &tokenizerv1.DetokenizeResourcesRequest{Profile: get("profile"), PurposeOfUse: get("purpose_of_use"), Justification: get("justification")}}, err
	}
	s, err := h.client.TokenizeResourcesStream(ctx)
	return tokenizeParts{s, get("profile")}, err
}

// bundleWriter writes the answer: the first part's top-level elements, the entries of
// every part, the elements that came after entry, with the parts' failures rebased to
// the whole Bundle's entry numbers.
type bundleWriter struct {
	w          http.ResponseWriter
	started    bool
	written    int
	wroteKeys  map[string]bool
	errList    listed[*tokenizerv1.ResourceError]
	unrestored listed[*tokenizerv1.UnrestoredPath]
}

var entryIndex = regexp.MustCompile(`^Bundle\.entry\[(\d+)\]`)

// rebase turns a part's entry number in path into the Bundle's.
func rebase(path string, base int) string {
	m := entryIndex.FindStringSubmatchIndex(path)
	if m == nil {
		return path
	}
	k, _ := strconv.Atoi(path[m[2]:m[3]])
	return "Bundle.entry[" + strconv.Itoa(base+k) + "]" + path[m[1]:]
}

// part writes one part's answer; base is the Bundle entry number of its first entry.
func (bw *bundleWriter) part(resp *tokenizerv1.ResourcesResponse, base int) error {
	for _, e := range resp.GetErrors() {
		e.Path = rebase(e.GetPath(), base)
		bw.errList.add(e)
	}
	for _, u := range resp.GetUnrestored() {
		u.Path = rebase(u.GetPath(), base)
		bw.unrestored.add(u)
	}
	if len(resp.GetResources()) != 1 || resp.GetResources()[0] == "" {
		return errors.New("a part of the Bundle could not be processed")
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(resp.GetResources()[0])))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("the service answered a part with something other than a Bundle")
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if key == "entry" {
			var entries []json.RawMessage
			if err := json.Unmarshal(v, &entries); err != nil {
				return err
			}
			bw.entries(entries)
			continue
		}
		bw.field(key, v)
	}
	return nil
}

func (bw *bundleWriter) start() {
	if bw.started {
		return
	}
	bw.started = true
	bw.w.Header().Set("Content-Type", fhirJSON)
	bw.w.Header().Set("Trailer", errorsHeader+", "+unrestoredHeader)
	_, _ = io.WriteString(bw.w, `{"resourceType":"Bundle"`)
	bw.wroteKeys = map[string]bool{"resourceType": true}
}

// field writes a top-level element once; before the entries have started, or after
// they ended (the entry array is then closed first).
func (bw *bundleWriter) field(key string, v json.RawMessage) {
	bw.start()
	if bw.wroteKeys[key] {
		return
	}
	bw.wroteKeys[key] = true
	if bw.wroteKeys["entry"] && !bw.wroteKeys["]"] {
		_, _ = io.WriteString(bw.w, "]")
		bw.wroteKeys["]"] = true
	}
	k, _ := json.Marshal(key)
	_, _ = fmt.Fprintf(bw.w, ",%s:%s", k, v)
}

func (bw *bundleWriter) entries(list []json.RawMessage) {
	bw.start()
	if !bw.wroteKeys["entry"] {
		bw.wroteKeys["entry"] = true
		_, _ = io.WriteString(bw.w, `,"entry":[`)
	}
	for _, e := range list {
		if bw.written > 0 {
			_, _ = io.WriteString(bw.w, ",")
		}
		bw.written++
		_, _ = bw.w.Write(e)
	}
}

func (bw *bundleWriter) finish() {
	if bw.wroteKeys["entry"] && !bw.wroteKeys["]"] {
		_, _ = io.WriteString(bw.w, "]")
	}
	_, _ = io.WriteString(bw.w, "}")
	setErrors(bw.w.Header(), bw.errList.items, bw.errList.more, trailerBudget)
	setUnrestored(bw.w.Header(), bw.unrestored.items, bw.unrestored.more, trailerBudget)
}

// bundleReader reads a Bundle's top level and its entries one at a time.
type bundleReader struct {
	dec      *json.Decoder
	lim      *entryLimiter
	maxEntry int64 // the largest entry a part may carry
	seen     map[string]bool
	head     []rawField // top-level elements before entry
	tail     []rawField // and after it
	inArr    bool       // inside the entry array
	done     bool       // the entry array has ended
}

// next returns the next entry, or nil at the end of the array (then the rest of the
// top level is read into tail).
func (br *bundleReader) next() (json.RawMessage, error) {
	if !br.inArr {
		if err := br.toEntries(); err != nil || br.done {
			return nil, err
		}
	}
	if br.dec.More() {
		br.lim.n = 0
		var e json.RawMessage
		if err := br.dec.Decode(&e); err != nil {
			return nil, err
		}
		if int64(len(e)) > br.maxEntry {
			return nil, errEntryTooLarge
		}
		if !utf8.Valid(e) {
			return nil, errNotUTF8
		}
		return e, nil
	}
	if _, err := br.dec.Token(); err != nil { // ]
		return nil, err
	}
	br.inArr, br.done = false, true
	return nil, br.rest(&br.tail)
}

// toEntries reads the top level up to the entry array.
func (br *bundleReader) toEntries() error {
	if br.done {
		return nil
	}
	if t, err := br.dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a FHIR resource: not a JSON object")
	}
	if err := br.rest(&br.head); err != nil {
		return err
	}
	if !br.inArr {
		br.done = true // no entry at all
	}
	return nil
}

// rest reads top-level elements into dst until the entry array starts or the object
// ends; duplicates are refused (a reader would keep one of them).
func (br *bundleReader) rest(dst *[]rawField) error {
	for br.dec.More() {
		br.lim.n = 0
		kt, err := br.dec.Token()
		if err != nil {
			return err
		}
		key, _ := kt.(string)
		if br.seen[key] {
			return errors.New("malformed resource: an element appears twice at the top level")
		}
		br.seen[key] = true
		if key == "entry" {
			if !br.seen["resourceType"] {
				return errors.New(`a Bundle larger than the limit must give "resourceType" before "entry"`)
			}
			if t, err := br.dec.Token(); err != nil || t != json.Delim('[') {
				return errors.New("Bundle.entry is not an array")
			}
			br.inArr = true
			return nil
		}
		var v json.RawMessage
		if err := br.dec.Decode(&v); err != nil {
			return err
		}
		if !utf8.Valid(v) || !utf8.ValidString(key) {
			return errNotUTF8
		}
		if key == "resourceType" && string(v) != `"Bundle"` {
			return errNotBundle
		}
		if len(*dst) >= 64 {
			return errors.New("too many top-level elements")
		}
		*dst = append(*dst, rawField{key, v})
	}
	if _, err := br.dec.Token(); err != nil { // }
		return err
	}
	if _, err := br.dec.Token(); err != io.EOF {
		return errors.New("malformed JSON: more than one value")
	}
	return nil
}

// partOf encodes a part: a Bundle with the top-level elements and the entries.
func partOf(fields []rawField, entries []json.RawMessage) string {
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle"`)
	for _, f := range fields {
		if f.key == "resourceType" {
			continue
		}
		k, _ := json.Marshal(f.key)
		fmt.Fprintf(&b, ",%s:%s", k, f.val)
	}
	b.WriteString(`,"entry":[`)
	for i, e := range entries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteString("]}")
	return b.String()
}

// serveBundleParts answers a Bundle larger than the message limit (see above).
func (h *fhirHandler) serveBundleParts(ctx context.Context, w http.ResponseWriter, r *http.Request, body io.Reader, q map[string][]string) {
	answerWhileReading(w, r)
	// Entries are checked for size as decoded; the limiter only bounds what the decoder
	// buffers before it can tell (an entry plus what it read ahead).
	lim := &entryLimiter{r: body, limit: 2 * h.maxBytes}
	br := &bundleReader{dec: json.NewDecoder(lim), lim: lim, maxEntry: h.maxBytes / 2, seen: map[string]bool{}}
	br.dec.UseNumber()
	first, err := br.next()
	if errors.Is(err, errNotBundle) {
		h.refuse(w, r, false, http.StatusRequestEntityTooLarge, codes.InvalidArgument, err.Error())
		return
	}
	if err != nil {
		httpStatus, code, msg := readRefusal(err)
		h.refuse(w, r, true, httpStatus, code, msg)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := h.openParts(ctx, q)
	if err != nil {
		grpcOutcome(w, err)
		return
	}
	bw := &bundleWriter{w: w}
	err = h.sendParts(st, br, bw, first)
	if err != nil && !bw.started {
		if _, ok := status.FromError(err); ok {
			grpcOutcome(w, err)
			return
		}
		httpStatus, code, msg := readRefusal(err)
		h.refuse(w, r, true, httpStatus, code, msg)
		return
	}
	if err != nil {
		h.abort(r, true, err)
	}
	bw.finish()
}

// sendParts sends the Bundle in parts, one at a time, and writes each answer.
func (h *fhirHandler) sendParts(st partStream, br *bundleReader, bw *bundleWriter, first json.RawMessage) error {
	defer st.CloseSend() //nolint:errcheck // the stream ends with the request either way
	base, size := 0, 0
	var entries []json.RawMessage
	send := func(fields []rawField) error {
		if err := st.Send(partOf(fields, entries)); err != nil {
			return err
		}
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		if err := bw.part(resp, base); err != nil {
			return err
		}
		base += len(entries)
		entries, size = entries[:0], 0
		return nil
	}
	for e := first; e != nil; {
		if len(entries) > 0 && (len(entries) == ndjsonBatch || int64(size+len(e)) > h.maxBytes/2) {
			if err := send(br.head); err != nil {
				return err
			}
		}
		entries, size = append(entries, e), size+len(e)
		var err error
		if e, err = br.next(); err != nil {
			return err
		}
	}
	if len(entries) > 0 || !bw.started {
		if err := send(br.head); err != nil {
			return err
		}
	}
	if len(br.tail) > 0 {
		return send(append(append([]rawField{}, br.head...), br.tail...))
	}
	return nil
}

// bundleReadError says what is wrong with the body without quoting it.
func bundleReadError(err error) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON: the body ends too early"
	case errors.Is(err, errNotUTF8):
		return err.Error()
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return "malformed resource: unexpected JSON type"
	}
	if _, _, msg, ok := bodyReadFailure(err); ok {
		return msg
	}
	// A read of the connection that failed: its text names sockets and addresses, which
	// are not the caller's business. (The reader's own errors are worded for callers.)
	var ne net.Error
	if errors.As(err, &ne) {
		return "request body could not be read"
	}
	return err.Error()
}

// bodyReadFailure is the answer to a body that could not be read for a reason the
// caller caused: one that stopped arriving or came too slowly (408,
// limits.read_idle_timeout or read_body_timeout), or a line,
// an entry or a body over the limit (413).
func bodyReadFailure(err error) (int, codes.Code, string, bool) {
	var tooBig *http.MaxBytesError
	switch {
	case isTimeout(err):
		return http.StatusRequestTimeout, codes.DeadlineExceeded, stallOf(err).Error(), true
	case errors.Is(err, bufio.ErrTooLong):
		return http.StatusRequestEntityTooLarge, codes.InvalidArgument, "an NDJSON line is larger than limits.max_message_bytes", true
	case errors.Is(err, errBodyCut):
		return statusClientClosed, codes.Canceled, errBodyCut.Error(), true
	case errors.Is(err, errEntryTooLarge):
		return http.StatusRequestEntityTooLarge, codes.InvalidArgument, errEntryTooLarge.Error(), true
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, codes.InvalidArgument, "request body exceeds limits.max_message_bytes", true
	}
	return 0, 0, "", false
}

// readRefusal is the answer to a body that could not be read or decoded:
// bodyReadFailure's where the caller's sending caused it, else 400 naming what is
// malformed (never quoting it).
func readRefusal(err error) (int, codes.Code, string) {
	if httpStatus, code, msg, ok := bodyReadFailure(err); ok {
		return httpStatus, code, msg
	}
	return http.StatusBadRequest, codes.InvalidArgument, bundleReadError(err)
}
