package k8s_test

import (
	_ "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "github.com/prometheus/prometheus/promql/parser"
	_ "k8s.io/api/apps/v1"
	_ "k8s.io/pod-security-admission/policy"
	_ "sigs.k8s.io/json"
	_ "sigs.k8s.io/kustomize/api/krusty"
	_ "github.com/google/go-containerregistry/pkg/v1/layout"
)
