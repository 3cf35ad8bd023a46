//go:build tools

// Package tools pins Helm's command for `go build helm.sh/helm/v4/cmd/helm`: deltawatch's
// chart tests run the real helm (lint, template) without downloading a release binary.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
