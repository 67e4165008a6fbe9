package harness

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Release is what a containerd release offers trustd, as far as the
// harness and the tests rely on it. Each fact was read in the release's
// source (go mod download github.com/containerd/containerd/v2@<version>)
// and is checked by running it (TestContainerdMatrix):
//
//	                               2.2.9          2.3.7          2.4.2
//	NRI API (containerd's go.mod)  nri v0.11.0    nri v0.12.0    nri v0.12.3
//	NRI validation                 yes            yes            yes
//	container.image in NRI         no             no             yes
//	native config version          3              4              4
//	[ttrpc] address by default     '' (*)         grpc + .ttrpc  grpc + .ttrpc
//	Go to build it (go.mod)        1.25.0         1.26.8         1.26.6
//
// (*) `containerd config default` prints it empty, and containerd 2.2 then
// derives it from the gRPC address at start; the harness sets it on every
// release. Every other key of the generated configuration (NRI,
// default_validator, image verifier bin_dir, transfer and CRI registry
// config_path, pinned_images.sandbox, the CRI runtime's keys) is the same
// on all three.
type Release struct {
	Version      string // as pinned, e.g. v2.3.7
	Major, Minor int

	// NRIValidation: NRI's default validator (required_plugins) and the
	// ValidateContainerAdjustment hook, which fail closed. 2.2 and later.
	NRIValidation bool

	// NRIImage: NRI's container messages carry container.image (name,
	// digest, config_digest). 2.4 and later; on earlier releases a plugin
	// has the io.kubernetes.cri.image-name annotation and containerd's
	// image store.
	NRIImage bool

	// ConfigVersion is the config.toml version the release reads natively.
	// The harness writes version 3, which each release here reads (2.3 and
	// later migrate it in memory, with a warning): the file a fleet keeps
	// across upgrades.
	ConfigVersion int
}

var releaseMinor = regexp.MustCompile(`^v?([0-9]+)\.([0-9]+)\.`)

// ReleaseOf describes the containerd release version (v2.3.7 or
// 2.3.7+unknown). Releases newer than the table are taken to be like its
// newest; releases before 2.0 are refused.
func ReleaseOf(version string) (Release, error) {
	m := releaseMinor.FindStringSubmatch(version)
	if m == nil {
		return Release{}, fmt.Errorf("containerd version %q: want major.minor.patch", version)
	}
	r := Release{Version: version}
	r.Major, _ = strconv.Atoi(m[1])
	r.Minor, _ = strconv.Atoi(m[2])
	if r.Major < 2 {
		return Release{}, fmt.Errorf("containerd %s: the harness supports 2.0 and later", version)
	}
	at := func(minor int) bool { return r.Major > 2 || r.Minor >= minor }
	r.NRIValidation = at(2)
	r.NRIImage = at(4)
	r.ConfigVersion = 3
	if at(3) {
		r.ConfigVersion = 4
	}
	return r, nil
}

// String is the release's version.
func (r Release) String() string { return r.Version }

// sameRelease reports whether a version containerd reports about itself
// (v2.3.7 from a release build, 2.3.7+unknown from `go install`) is the
// pinned version.
func sameRelease(pinned, reported string) bool {
	p := strings.TrimPrefix(pinned, "v")
	r := strings.TrimPrefix(reported, "v")
	return r == p || strings.HasPrefix(r, p+"+")
}
