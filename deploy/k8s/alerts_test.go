package k8s_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runbookPrefix is where every alert's runbook_url points: a section of the runbook.
const runbookPrefix = "https://github.com/phivault/tokenizer/blob/main/docs/operations.md#"

// requiredAlerts are the alerts issue 12 asks for.
var requiredAlerts = []string{
	"TokenizerAuditAppendFailures", "TokenizerAuditCheckpointStale", "TokenizerKeyProviderUnavailable",
	"TokenizerBreakGlassReveal", "TokenizerRevealAnomaly", "TokenizerReadinessFlapping",
	"TokenizerHighErrorRate", "TokenizerHighLatencyP99", "TokenizerPolicyReloadFailed",
	"TokenizerCertificateExpiringSoon",
}

// alertRules returns the alerting rules of the production overlay.
func alertRules(t *testing.T) []monitoringv1.Rule {
	t.Helper()
	var out []monitoringv1.Rule
	for _, pr := range all[monitoringv1.PrometheusRule](renderAll(t)[1]) {
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// metricNames parses expr with the Prometheus PromQL parser and returns the metric
// names its selectors read.
func metricNames(expr string) ([]string, error) {
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			if name != "" && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
		return nil
	})
	return names, nil
}

// alertMetricNames is every metric name the alerts read.
func alertMetricNames(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range alertRules(t) {
		names, err := metricNames(r.Expr.String())
		require.NoError(t, err, r.Alert)
		for _, n := range names {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// anchors are the GitHub heading anchors of docs/operations.md.
func anchors(t *testing.T) map[string]bool {
	t.Helper()
	body, err := os.ReadFile("../../docs/operations.md")
	require.NoError(t, err)
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(string(body), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			out[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return out
}

// TestAlertRules checks every alert: its expression parses, it has a severity and a
// summary, and its runbook_url names an existing section of docs/operations.md.
func TestAlertRules(t *testing.T) {
	rules := alertRules(t)
	var names []string
	sections := anchors(t)
	for _, r := range rules {
		names = append(names, r.Alert)
		_, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr.String())
		assert.NoError(t, err, "%s: PromQL", r.Alert)
		assert.Contains(t, []string{"page", "ticket"}, r.Labels["severity"], r.Alert)
		assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
		url := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(url, runbookPrefix)
		if assert.True(t, ok, "%s: runbook_url %q", r.Alert, url) {
			assert.True(t, sections[anchor], "%s: docs/operations.md has no section #%s", r.Alert, anchor)
		}
	}
	for _, want := range requiredAlerts {
		assert.Contains(t, names, want)
	}
	// The parser does refuse: a broken expression is an error.
	_, err := metricNames("sum(rate(tokenizer_grpc_requests_total[5m])")
	assert.Error(t, err)
}
