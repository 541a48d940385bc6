package policy

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Option adjusts how a policy file is loaded.
type Option func(*loadOptions)

type loadOptions struct {
	static []string
}

// WithStaticClasses names the static classes (one token per value), for the oracle
// check at load.
func WithStaticClasses(names []string) Option {
	return func(o *loadOptions) { o.static = names }
}

func options(opts []Option) loadOptions {
	var o loadOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// checkOracles refuses a principal that may tokenize and reveal masked (but not in
// full) on the same static class without acknowledge_oracle: the mask shows the last
// digits, and tokenizing the few candidates that fit them finds the one whose token
// matches (docs/security.md). A principal that may detokenize in full gains nothing.
func checkOracles(f File, classes []string, o loadOptions) error {
	for i, pc := range f.Principals {
		if pc.AcknowledgeOracle {
			continue
		}
		pr := &Principal{classes: map[string]map[string]bool{}}
		for c, ops := range pc.Classes {
			pr.classes[c] = map[string]bool{}
			for _, op := range ops {
				pr.classes[c][op] = true
			}
		}
		candidates := o.static
		if candidates == nil {
			candidates = classes
		}
		var bad []string
		for _, c := range candidates {
			if pr.Can(c, OpTokenize) && pr.Can(c, OpDetokenizeMasked) && !pr.Can(c, OpDetokenize) {
				bad = append(bad, c)
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			return fmt.Errorf("principals[%d] (%s): tokenize and detokenize_masked on static class %v make the masked reveal a full reveal (tokenize the candidates that fit the visible digits); grant one of them, or set acknowledge_oracle: true to accept that this principal can recover full values",
				i, pc.ID, slices.Compact(bad))
		}
	}
	return nil
}

// windowFor returns the principal's window of one kind ("reveal", "miss", "new").
func (p *Policy) windowFor(pr *Principal, kind string) *window {
	return p.limiters.window(kind + "\x00" + pr.ID)
}

// Missed counts n detokenize misses (NOT_FOUND): they count toward the reveal window
// (harvesting by guessing tokens costs like revealing), and this reports whether the
// call took the principal over its miss threshold (a "harvest" anomaly, once per
// window).
func (p *Policy) Missed(pr *Principal, n int, now time.Time) (crossed bool, inWindow int) {
	if pr == nil || n == 0 {
		return false, 0
	}
	threshold := pr.RateLimit.MissesPerMinute
	if threshold == 0 {
		threshold = pr.RateLimit.RevealsPerMinute
	}
	if threshold <= 0 {
		return false, 0
	}
	return p.windowFor(pr, "miss").add(now, n, threshold)
}

// MissThreshold is the miss count above which a principal is flagged for harvesting.
func (pr *Principal) MissThreshold() int {
	if pr.RateLimit.MissesPerMinute > 0 {
		return pr.RateLimit.MissesPerMinute
	}
	return pr.RateLimit.RevealsPerMinute
}

// TokenizeQuota reports whether the principal may create new static mappings now: its
// quota of new values in the current minute is not used up. It consumes nothing;
// Created counts.
func (p *Policy) TokenizeQuota(pr *Principal, now time.Time) bool {
	if pr == nil || pr.RateLimit.NewValuesPerMinute <= 0 {
		return true
	}
	return p.windowFor(pr, "new").peek(now) < pr.RateLimit.NewValuesPerMinute
}

// Created counts n new static mappings made by the principal and reports whether this
// took it over its enumeration threshold (once per window).
func (p *Policy) Created(pr *Principal, n int, now time.Time) (crossed bool, inWindow int) {
	if pr == nil || n == 0 {
		return false, 0
	}
	threshold := pr.EnumerationThreshold()
	if threshold <= 0 && pr.RateLimit.NewValuesPerMinute <= 0 {
		return false, 0
	}
	if threshold <= 0 {
		threshold = 1 << 62
	}
	return p.windowFor(pr, "new").add(now, n, threshold)
}

// EnumerationThreshold is the count of new static mappings per minute above which a
// principal is flagged for enumeration (0: none).
func (pr *Principal) EnumerationThreshold() int {
	if pr.RateLimit.EnumerationPerMinute > 0 {
		return pr.RateLimit.EnumerationPerMinute
	}
	return pr.RateLimit.NewValuesPerMinute / 2
}

func (w *window) peek(now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Sub(w.start) >= time.Minute {
		return 0
	}
	return w.count
}
