package docker

import (
	"net/url"
	"path"
	"regexp"
	"strings"
)

// kind is what a request asks of trustd.
type kind int

const (
	// pass: nothing runs from an image here (list, inspect, pull, stop...).
	pass kind = iota
	// create: POST /containers/create, judged from its body's Image.
	create
	// container: the container target runs code (start, restart,
	// unpause, exec create), judged from the container's own image.
	container
	// exec: POST /exec/{id}/start, judged from the exec's container.
	exec
	// group: an endpoint of a docker_allow group, refused unless allowed.
	group
	// malformed: a request line trustd cannot read as dockerd routes it.
	malformed
)

// route is a request classified: its kind, the container or exec it
// targets, the docker_allow group, and what it does, for the reason.
type route struct {
	kind   kind
	target string // container name or ID, or exec ID
	group  string
	what   string // e.g. "POST /containers/{id}/start"
}

// versionPrefix is the API version dockerd's router accepts before a path.
var versionPrefix = regexp.MustCompile(`^/v[0-9.]+(/|$)`)

// classify reads a request as dockerd's router does: the method as sent,
// the decoded path, an optional /vX.Y prefix. A path that is not in
// canonical form (dockerd's router would redirect it, never serve it) or
// does not parse is malformed when the method can change anything.
func classify(method, uri string) route {
	u, err := url.ParseRequestURI(uri)
	p := ""
	if err == nil {
		p = u.Path
	}
	readOnly := method == "GET" || method == "HEAD"
	if err != nil || p == "" || path.Clean(p) != p {
		if readOnly {
			return route{kind: pass}
		}
		return route{kind: malformed, what: method + " " + uri}
	}
	if m := versionPrefix.FindString(p); m != "" {
		p = "/" + strings.TrimPrefix(p, m)
	}
	if readOnly {
		return route{kind: pass}
	}
	seg := strings.Split(strings.TrimPrefix(p, "/"), "/")
	last := seg[len(seg)-1]
	switch {
	case method != "POST" && method != "DELETE" && method != "PUT":
		// dockerd routes no other method that changes anything; an
		// unknown one is answered 404 or 405.
		return route{kind: pass}
	case method == "POST" && p == "/containers/create":
		return route{kind: create, what: "POST /containers/create"}
	// dockerd's routes read the name greedily ({name:.*}): so does trustd.
	case method == "POST" && len(seg) >= 3 && seg[0] == "containers" && (last == "start" || last == "restart" || last == "unpause" || last == "exec"):
		return route{kind: container, target: strings.Join(seg[1:len(seg)-1], "/"), what: "POST /containers/{id}/" + last}
	case method == "POST" && len(seg) >= 3 && seg[0] == "exec" && last == "start":
		return route{kind: exec, target: strings.Join(seg[1:len(seg)-1], "/"), what: "POST /exec/{id}/start"}
	case method == "POST" && p == "/build":
		return route{kind: group, group: "build", what: "POST /build (the classic builder runs containers of its FROM images)"}
	case method == "POST" && (p == "/grpc" || p == "/session"):
		return route{kind: group, group: "buildkit", what: "POST " + p + " (BuildKit runs containers of its FROM images)"}
	case method == "POST" && (p == "/swarm/init" || p == "/swarm/join"):
		return route{kind: group, group: "swarm", what: "POST " + p + " (a swarm node runs the tasks its managers assign)"}
	case method == "POST" && (p == "/services/create" || len(seg) == 3 && (seg[0] == "services" || seg[0] == "nodes") && last == "update"):
		return route{kind: group, group: "swarm", what: "POST /" + seg[0] + "/" + last + " (swarm tasks start containers inside dockerd)"}
	case seg[0] == "plugins" && len(seg) > 1 && !(method == "POST" && last == "push"):
		// Plugin names have slashes: /plugins/{name:.*}/enable.
		return route{kind: group, group: "plugins", what: method + " /plugins/... (managed plugins run containers, and can replace or disable plugins)"}
	}
	return route{kind: pass}
}
