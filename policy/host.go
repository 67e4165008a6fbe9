package policy

// Registry hosts in trustd's canonical form. Docker's reference grammar
// keeps a host as it was written, but the network does not tell
// "REGISTRY.corp.example", "registry.corp.example" and
// "registry.corp.example:443" apart (DNS and TLS compare host names
// case-insensitively, and 443 is the port of HTTPS), nor "docker.io" from
// its aliases. Every name trustd matches or looks trust data up for is in
// the canonical form below, so that one registry cannot escape a rule by
// being spelled another way; what was asked for is kept for messages
// (Decision.Requested).
//
// The canonical host is the host in ASCII lower case, an IPv6 literal in
// its RFC 5952 form, the port without leading zeros and without ":443",
// and "docker.io" for "index.docker.io" and "registry-1.docker.io" (with a
// single-segment path then under "library/", as Docker reads "docker.io/x").
// ":443" is kept on a host without '.' that is not "localhost": without its
// port, such a host would be read as a Docker Hub namespace.

import (
	"fmt"
	"net/netip"
	"strings"
)

// The Docker Hub's registry host, which containerd uses for "docker.io".
const hubRegistryHost = "registry-1.docker.io"

const httpsPort = "443"

// canonicalRepo returns the canonical form of repo, a name that
// parseNormalized returned (its first segment is a registry host). It
// returns repo itself, without allocating, when it is already canonical.
func canonicalRepo(repo string) (string, error) {
	i := strings.IndexByte(repo, '/')
	if i < 0 {
		return "", errRefFormat
	}
	host, path := repo[:i], repo[i+1:]
	h, err := canonicalHost(host)
	if err != nil {
		return "", err
	}
	if h == host {
		return repo, nil
	}
	if h == defaultDomain && strings.IndexByte(path, '/') < 0 {
		path = officialRepoPrefix + path
		if len(path) > maxRepoPath {
			return "", errRefTooLong
		}
	}
	return h + "/" + path, nil
}

// canonicalHost returns the canonical form of host, a registry host with
// an optional port that isDomainAndPort accepts. It does not allocate when
// host is already canonical.
func canonicalHost(host string) (string, error) {
	name, port := splitHostPort(host)
	if hostIsCanonical(name, port) {
		if port == "" && (name == legacyDomain || name == hubRegistryHost) {
			return defaultDomain, nil
		}
		return host, nil
	}
	name = lowerASCII(name)
	if strings.HasPrefix(name, "[") {
		if a, err := netip.ParseAddr(name[1 : len(name)-1]); err == nil && a.Is6() && !a.Is4In6() {
			name = "[" + a.String() + "]"
		}
	}
	port = canonicalPort(port)
	if port == httpsPort && !hostNeedsPort(name) {
		port = ""
	}
	switch {
	case port != "":
		return name + ":" + port, nil
	case hostNeedsPort(name):
		return "", fmt.Errorf("registry host %q is a host only by its upper case (it has no '.' and no port and is not localhost): trustd compares hosts in lower case, where it would be a Docker Hub namespace; write the host with its domain or its port", host)
	case name == legacyDomain || name == hubRegistryHost:
		return defaultDomain, nil
	}
	return name, nil
}

// hostNeedsPort reports whether the lowercase host name, without a port,
// would be read as a Docker Hub namespace rather than a host.
func hostNeedsPort(name string) bool {
	return name != "localhost" && !strings.ContainsAny(name, ".:")
}

// splitHostPort splits "host[:port]" or "[v6][:port]"; port has no ':'.
func splitHostPort(s string) (name, port string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.HasPrefix(s, "[") && strings.IndexByte(s[i:], ']') >= 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// hostIsCanonical reports whether name and port need no change but for the
// Docker Hub aliases, without allocating.
func hostIsCanonical(name, port string) bool {
	if hasUpper(name) || port != "" && (port[0] == '0' || port == httpsPort && !hostNeedsPort(name)) {
		return false
	}
	if strings.HasPrefix(name, "[") {
		a, err := netip.ParseAddr(name[1 : len(name)-1])
		if err != nil || !a.Is6() || a.Is4In6() {
			return true
		}
		var buf [64]byte
		return string(a.AppendTo(buf[:0])) == name[1:len(name)-1]
	}
	return true
}

// canonicalPort drops a port's leading zeros: Go's dialer reads ":0443"
// as port 443.
func canonicalPort(port string) string {
	if port == "" {
		return ""
	}
	t := strings.TrimLeft(port, "0")
	if t == "" {
		return "0"
	}
	return t
}

// lowerASCII is strings.ToLower for the ASCII a host is made of.
func lowerASCII(s string) string {
	if !hasUpper(s) {
		return s
	}
	return strings.ToLower(s)
}

// canonicalGlobHost is canonicalHost for the first segment of a pattern
// that holds a wildcard: the glob is compared in lower case, and a literal
// port loses its leading zeros and ":443".
func canonicalGlobHost(host string) string {
	name, port := splitHostPort(lowerASCII(host))
	if port != "" && !strings.Contains(port, "*") {
		if port = canonicalPort(port); port == httpsPort && !hostNeedsPort(name) {
			port = ""
		}
	}
	if port == "" {
		return name
	}
	return name + ":" + port
}
