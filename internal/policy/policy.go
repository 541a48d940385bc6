package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Class operations, granted per class.
const (
	OpTokenize         = "tokenize"
	OpDetokenize       = "detokenize"
	OpDetokenizeMasked = "detokenize_masked"
	OpDelete           = "delete"
	// OpDetokenizeGranted reveals tokens of the class only under an active grant for
	// the token's subject (internal/grant).
	OpDetokenizeGranted = "detokenize_granted"
)

// Request operations, granted per principal.
const (
	OpAuditExport = "audit_export"
	OpAuditVerify = "audit_verify"
	OpDisclosures = "disclosures"
	OpKeysRotate  = "keys_rotate"
	// OpSubjectForget erases a data subject (SubjectService.ForgetSubject).
	OpSubjectForget = "subject_forget"
	// Grant operations (GrantService). Break-glass grants need break_glass instead.
	OpGrantCreate  = "grant_create"
	OpGrantApprove = "grant_approve"
	OpGrantRevoke  = "grant_revoke"
)

var (
	classOps   = []string{OpTokenize, OpDetokenize, OpDetokenizeMasked, OpDelete, OpDetokenizeGranted}
	requestOps = []string{OpAuditExport, OpAuditVerify, OpDisclosures, OpKeysRotate, OpSubjectForget,
		OpGrantCreate, OpGrantApprove, OpGrantRevoke}
)

// File is the policy file's shape.
type File struct {
	Principals []PrincipalConfig `yaml:"principals"`
}

// PrincipalConfig grants one identity (or identity pattern, `*` matching any run of
// characters) what it may do. Anything not granted is denied.
type PrincipalConfig struct {
	// ID is an identity (spiffe://…, or a certificate CN) or a pattern with *.
	ID string `yaml:"id"`
	// Classes maps a class name (or "*" for every class) to its operations.
	Classes map[string][]string `yaml:"classes"`
	// Operations are the request operations (audit_export, audit_verify, disclosures,
	// keys_rotate).
	Operations []string `yaml:"operations"`
	// Purposes are the HL7 v3 PurposeOfUse codes the principal may invoke.
	Purposes []string `yaml:"purposes"`
	// BreakGlass allows ETREAT (which also needs a justification).
	BreakGlass bool      `yaml:"break_glass"`
	RateLimit  RateLimit `yaml:"rate_limit"`
	// AcknowledgeOracle accepts tokenize with detokenize_masked on a static class: the
	// principal can then recover full values (docs/security.md, "static tokens are an
	// oracle"), so the policy must say that it is trusted to.
	AcknowledgeOracle bool `yaml:"acknowledge_oracle"`
}

// RateLimit bounds a principal: requests per second (with a burst), and a threshold of
// revealed values per minute above which an anomaly is raised.
type RateLimit struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
	RevealsPerMinute  int     `yaml:"reveals_per_minute"`
	// NewValuesPerMinute is a tokenize quota: once the principal has created this many
	// new static mappings in a minute, its tokenize requests are refused until the next
	// minute (0: no quota).
	NewValuesPerMinute int `yaml:"new_values_per_minute"`
	// EnumerationPerMinute raises an "enumeration" anomaly when the principal creates
	// more new static mappings than this in a minute (0: half the quota, if any).
	EnumerationPerMinute int `yaml:"enumeration_per_minute"`
	// MissesPerMinute raises a "harvest" anomaly when the principal presents more
	// unknown tokens (NOT_FOUND) than this in a minute (0: reveals_per_minute). Misses
	// also count toward reveals_per_minute.
	MissesPerMinute int `yaml:"misses_per_minute"`
}

// Principal is a compiled PrincipalConfig.
type Principal struct {
	PrincipalConfig
	pattern *regexp.Regexp
	classes map[string]map[string]bool
	ops     map[string]bool
	purpose map[string]bool
}

// Policy is a validated, immutable policy.
type Policy struct {
	exact    map[string]*Principal
	patterns []*Principal
	// limiters are shared across reloads by principal ID, so a reload does not reset
	// anybody's rate.
	limiters *limiters
}

// Dev is the development policy that insecure mode gives the identity "dev": every
// operation on every class, every purpose, break-glass, no limits.
func Dev() *Policy {
	p, err := compile(File{Principals: []PrincipalConfig{{
		ID:         DevIdentity,
		Classes:    map[string][]string{"*": {OpTokenize, OpDetokenize, OpDelete}},
		Operations: slices.Clone(requestOps),
		Purposes:   allPurposes(),
		BreakGlass: true,
	}}}, nil, newLimiters())
	if err != nil {
		panic(err)
	}
	return p
}

func allPurposes() []string {
	out := make([]string, 0, len(PurposesOfUse))
	for k := range PurposesOfUse {
		if k != BreakGlass {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Load reads and validates a policy file. classes are the configured class names.
func Load(path string, classes []string, opts ...Option) (*Policy, error) {
	return load(path, classes, newLimiters(), opts...)
}

func load(path string, classes []string, l *limiters, opts ...Option) (*Policy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	p, err := compile(f, classes, l)
	if err == nil {
		err = checkOracles(f, classes, options(opts))
	}
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	return p, nil
}

func compile(f File, classes []string, l *limiters) (*Policy, error) {
	p := &Policy{exact: map[string]*Principal{}, limiters: l}
	if len(f.Principals) == 0 {
		return nil, errors.New("principals: at least one is required (the policy denies everything else)")
	}
	for i, pc := range f.Principals {
		where := fmt.Sprintf("principals[%d]", i)
		if pc.ID == "" {
			return nil, fmt.Errorf("%s.id: required", where)
		}
		pr := &Principal{PrincipalConfig: pc, classes: map[string]map[string]bool{}, ops: map[string]bool{}, purpose: map[string]bool{}}
		for class, ops := range pc.Classes {
			if class != "*" && classes != nil && !slices.Contains(classes, class) {
				return nil, fmt.Errorf("%s.classes: %q is not a configured class", where, class)
			}
			set := map[string]bool{}
			for _, op := range ops {
				if !slices.Contains(classOps, op) {
					return nil, fmt.Errorf("%s.classes.%s: operation %q: want one of %s", where, class, op, strings.Join(classOps, ", "))
				}
				set[op] = true
			}
			pr.classes[class] = set
		}
		for _, op := range pc.Operations {
			if !slices.Contains(requestOps, op) {
				return nil, fmt.Errorf("%s.operations: %q: want one of %s", where, op, strings.Join(requestOps, ", "))
			}
			pr.ops[op] = true
		}
		for _, pu := range pc.Purposes {
			if _, ok := PurposesOfUse[pu]; !ok {
				return nil, fmt.Errorf("%s.purposes: %q is not an HL7 v3 PurposeOfUse code", where, pu)
			}
			if pu == BreakGlass {
				return nil, fmt.Errorf("%s.purposes: grant ETREAT with break_glass: true, not as a purpose", where)
			}
			pr.purpose[pu] = true
		}
		rl := pc.RateLimit
		if rl.RequestsPerSecond < 0 || rl.Burst < 0 || rl.RevealsPerMinute < 0 || rl.NewValuesPerMinute < 0 || rl.EnumerationPerMinute < 0 || rl.MissesPerMinute < 0 {
			return nil, fmt.Errorf("%s.rate_limit: values must not be negative", where)
		}
		if rl.RequestsPerSecond > 0 && rl.Burst == 0 {
			pr.RateLimit.Burst = max(1, int(rl.RequestsPerSecond))
		}
		if strings.Contains(pc.ID, "*") {
			pr.pattern = regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(pc.ID), `\*`, ".*") + "$")
			p.patterns = append(p.patterns, pr)
			continue
		}
		if _, dup := p.exact[pc.ID]; dup {
			return nil, fmt.Errorf("%s.id: %q is listed twice", where, pc.ID)
		}
		p.exact[pc.ID] = pr
	}
	return p, nil
}

// Find returns the principal for an identity: an exact entry, else the first pattern
// that matches, else nil (denied).
func (p *Policy) Find(identity string) *Principal {
	if p == nil {
		return nil
	}
	if pr, ok := p.exact[identity]; ok {
		return pr
	}
	for _, pr := range p.patterns {
		if pr.pattern.MatchString(identity) {
			return pr
		}
	}
	return nil
}

// Can reports whether the principal may perform a class operation on class.
func (pr *Principal) Can(class, op string) bool {
	if pr == nil {
		return false
	}
	if set, ok := pr.classes[class]; ok {
		return set[op]
	}
	return pr.classes["*"][op]
}

// CanAny reports whether the principal may perform op on at least one class.
func (pr *Principal) CanAny(op string) bool {
	if pr == nil {
		return false
	}
	for _, set := range pr.classes {
		if set[op] {
			return true
		}
	}
	return false
}

// Allowed reports whether the principal may perform a request operation.
func (pr *Principal) Allowed(op string) bool { return pr != nil && pr.ops[op] }

// MayPurpose reports whether the principal may invoke a purpose of use.
func (pr *Principal) MayPurpose(purpose string) bool {
	if pr == nil {
		return false
	}
	if purpose == BreakGlass {
		return pr.BreakGlass
	}
	return pr.purpose[purpose]
}

// Allow takes one request from the principal's rate and, when it is over, returns how
// long to wait.
func (p *Policy) Allow(pr *Principal, now time.Time) (ok bool, retryAfter time.Duration) {
	if pr == nil || pr.RateLimit.RequestsPerSecond <= 0 {
		return true, 0
	}
	return p.limiters.bucket(pr.ID).take(now, pr.RateLimit.RequestsPerSecond, float64(pr.RateLimit.Burst))
}

// Revealed counts n revealed values in the principal's one-minute window and reports
// whether this call took it over its threshold (once per window).
func (p *Policy) Revealed(pr *Principal, n int, now time.Time) (crossed bool, inWindow int) {
	if pr == nil || pr.RateLimit.RevealsPerMinute <= 0 || n == 0 {
		return false, 0
	}
	return p.limiters.window(pr.ID).add(now, n, pr.RateLimit.RevealsPerMinute)
}

// limiters hold per-principal state across policy reloads.
type limiters struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	windows map[string]*window
}

func newLimiters() *limiters {
	return &limiters{buckets: map[string]*bucket{}, windows: map[string]*window{}}
}

func (l *limiters) bucket(id string) *bucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[id]
	if !ok {
		b = &bucket{tokens: -1}
		l.buckets[id] = b
	}
	return b
}

func (l *limiters) window(id string) *window {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.windows[id]
	if !ok {
		w = &window{}
		l.windows[id] = w
	}
	return w
}

// bucket is a token bucket.
type bucket struct {
	mu     sync.Mutex
	tokens float64 // -1 until first use: starts full
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < 0 {
		b.tokens, b.last = burst, now
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// window counts reveals per fixed one-minute window.
type window struct {
	mu      sync.Mutex
	start   time.Time
	count   int
	flagged bool
}

func (w *window) add(now time.Time, n, threshold int) (bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.start) >= time.Minute {
		w.start, w.count, w.flagged = now, 0, false
	}
	w.count += n
	if w.count > threshold && !w.flagged {
		w.flagged = true
		return true, w.count
	}
	return false, w.count
}

// Store holds the current policy and swaps it atomically on reload.
type Store struct {
	mu      sync.RWMutex
	current *Policy
	path    string
	classes []string
	opts    []Option
	mtime   time.Time
	size    int64
}

// NewStore loads path (or, when path is empty, serves fixed).
func NewStore(path string, classes []string, fixed *Policy, opts ...Option) (*Store, error) {
	s := &Store{path: path, classes: classes, current: fixed, opts: opts}
	if path == "" {
		return s, nil
	}
	p, err := Load(path, classes, opts...)
	if err != nil {
		return nil, err
	}
	s.current = p
	s.mtime, s.size = stat(path)
	return s, nil
}

func stat(path string) (time.Time, int64) {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}, 0
	}
	return fi.ModTime(), fi.Size()
}

// Current is the policy in force.
func (s *Store) Current() *Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current
}

// Reload re-reads the file. A file that does not load keeps the old policy; the error
// says why.
func (s *Store) Reload() error {
	if s.path == "" {
		return nil
	}
	s.mu.RLock()
	l := s.current.limiters
	s.mu.RUnlock()
	mtime, size := stat(s.path)
	p, err := load(s.path, s.classes, l, s.opts...)
	if err != nil {
		s.mu.Lock()
		s.mtime, s.size = mtime, size // do not retry the same bad file every tick
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.current, s.mtime, s.size = p, mtime, size
	s.mu.Unlock()
	return nil
}

// Changed reports whether the file changed since it was last read.
func (s *Store) Changed() bool {
	if s.path == "" {
		return false
	}
	mtime, size := stat(s.path)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return !mtime.Equal(s.mtime) || size != s.size
}
