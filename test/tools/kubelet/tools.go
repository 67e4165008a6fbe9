//go:build tools

// Package kubelet pins the kubelet command in this module's requirements.
package kubelet

import _ "k8s.io/kubernetes/cmd/kubelet"
