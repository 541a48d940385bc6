// Package k8s holds the tests of the Kubernetes manifests beside it (base/, components/,
// overlays/): every overlay renders with kustomize, decodes strictly into the typed API
// structs, meets the restricted Pod Security Standard, configures the binary the way
// it accepts, and alerts only on metrics the running service exports.
package k8s
