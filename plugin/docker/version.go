package docker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// fixedIn is, per major line of Docker Engine that received it, the first
// release with the fix for CVE-2024-41110 (an API request with a
// zero-length body was passed to authorization plugins without it, so a
// plugin could allow what it would have refused). Lines from 28 on, and
// moby v2, always have it; lines not listed here never got it.
var fixedIn = map[int][3]int{
	23: {23, 0, 15},
	24: {24, 0, 9},
	25: {25, 0, 6},
	26: {26, 1, 5},
	27: {27, 1, 1},
}

// EngineFixed reports whether Docker Engine version v (as GET /version
// gives it: "27.1.1", "28.3.2", "v2.0.0-beta.24") has the fix for
// CVE-2024-41110; why says what was concluded, for the person who reads
// it. A version trustd cannot read is not known to be fixed.
func EngineFixed(v string) (ok bool, why string) {
	n, err := parseVersion(v)
	if err != nil {
		return false, fmt.Sprintf("Docker Engine version %q cannot be read (%v): trustd cannot tell whether it has the fix for CVE-2024-41110, which authorization depends on", v, err)
	}
	switch {
	case n[0] == 2:
		return true, fmt.Sprintf("Docker Engine %s (moby v2) has the fix for CVE-2024-41110", v)
	case n[0] >= 28:
		return true, fmt.Sprintf("Docker Engine %s has the fix for CVE-2024-41110", v)
	}
	min, listed := fixedIn[n[0]]
	if listed && (n[1] > min[1] || n[1] == min[1] && n[2] >= min[2]) {
		return true, fmt.Sprintf("Docker Engine %s has the fix for CVE-2024-41110", v)
	}
	if listed {
		return false, fmt.Sprintf("Docker Engine %s lacks the fix for CVE-2024-41110 (a request with an empty body skips authorization plugins): upgrade to %d.%d.%d or later", v, min[0], min[1], min[2])
	}
	return false, fmt.Sprintf("Docker Engine %s lacks the fix for CVE-2024-41110 (a request with an empty body skips authorization plugins): upgrade to 27.1.1, 26.1.5, 25.0.6, 24.0.9, 23.0.15 or later", v)
}

// parseVersion reads major.minor.patch from v ("v" prefix, and any
// pre-release or build suffix after the patch, ignored).
func parseVersion(v string) ([3]int, error) {
	var n [3]int
	s := strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(s, "-+~"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return n, fmt.Errorf("want major.minor.patch")
	}
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || strings.Trim(p, "0123456789") != "" {
			return n, fmt.Errorf("want major.minor.patch")
		}
		n[i] = x
	}
	return n, nil
}

// EngineStatus asks dockerd its version and whether it has the fix for
// CVE-2024-41110 (EngineFixed).
func (p *Plugin) EngineStatus(ctx context.Context) (version string, fixed bool, why string, err error) {
	v, err := p.Docker.Version(ctx)
	if err != nil {
		return "", false, "", err
	}
	fixed, why = EngineFixed(v.Version)
	return v.Version, fixed, why, nil
}

// LogEngine waits until dockerd answers (it starts after trustd, which it
// needs), then logs its version once: as an error when the engine lacks
// the CVE-2024-41110 fix, since trustd cannot then claim to enforce.
func (p *Plugin) LogEngine(ctx context.Context) {
	for {
		v, fixed, why, err := p.EngineStatus(ctx)
		if err == nil {
			if fixed {
				p.Log.Info("connected to Docker Engine", "version", v, "address", p.Docker.Address)
			} else {
				p.Log.Error("Docker Engine cannot be enforced", "version", v, "address", p.Docker.Address, "error", why)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}
