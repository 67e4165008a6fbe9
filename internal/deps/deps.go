//go:build tools

// Package deps pins the modules trustd and its tests build on, so that
// `go mod tidy` keeps them while packages are being added.
package deps

import (
	_ "github.com/containerd/containerd/v2/client"
	_ "github.com/containerd/nri/pkg/stub"
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/distribution/reference"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/tarball"
	_ "github.com/opencontainers/go-digest"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/secure-systems-lab/go-securesystemslib/cjson"
	_ "github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	_ "k8s.io/cri-api/pkg/apis/runtime/v1"
	_ "google.golang.org/grpc"
)
