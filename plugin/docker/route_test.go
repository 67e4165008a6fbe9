package docker

import "testing"

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name, method, uri string
		kind              kind
		target, group     string
	}{
		{"list", "GET", "/v1.47/containers/json?all=1", pass, "", ""},
		{"inspect", "GET", "/containers/abc/json", pass, "", ""},
		{"pull", "POST", "/v1.47/images/create?fromImage=x&tag=1", pass, "", ""},
		{"load", "POST", "/images/load", pass, "", ""},
		{"stop", "POST", "/containers/abc/stop", pass, "", ""},
		{"create", "POST", "/v1.47/containers/create?name=x", create, "", ""},
		{"create no version", "POST", "/containers/create", create, "", ""},
		{"start", "POST", "/v1.47/containers/abc/start", container, "abc", ""},
		{"restart", "POST", "/containers/abc/restart?t=1", container, "abc", ""},
		{"unpause", "POST", "/containers/abc/unpause", container, "abc", ""},
		{"exec create", "POST", "/containers/abc/exec", container, "abc", ""},
		{"exec start", "POST", "/v1.47/exec/e1/start", exec, "e1", ""},
		{"greedy name, as dockerd's router", "POST", "/containers/a/start/start", container, "a/start", ""},
		{"encoded slash decoded, as dockerd's router", "POST", "/containers/a%2Fb/start", container, "a/b", ""},
		{"build", "POST", "/v1.47/build?t=x", group, "", "build"},
		{"grpc", "POST", "/grpc", group, "", "buildkit"},
		{"session", "POST", "/session", group, "", "buildkit"},
		{"swarm init", "POST", "/swarm/init", group, "", "swarm"},
		{"swarm join", "POST", "/swarm/join", group, "", "swarm"},
		{"service create", "POST", "/v1.47/services/create", group, "", "swarm"},
		{"service update", "POST", "/services/s1/update?version=3", group, "", "swarm"},
		{"node update", "POST", "/nodes/n1/update", group, "", "swarm"},
		{"plugin pull", "POST", "/plugins/pull?remote=x", group, "", "plugins"},
		{"plugin enable, name with slashes", "POST", "/plugins/vieux/sshfs:latest/enable", group, "", "plugins"},
		{"plugin disable", "POST", "/v1.47/plugins/authz/disable", group, "", "plugins"},
		{"plugin remove", "DELETE", "/plugins/authz", group, "", "plugins"},
		{"plugin set", "POST", "/plugins/authz/set", group, "", "plugins"},
		{"plugin push", "POST", "/plugins/p/push", pass, "", ""},
		{"plugin list", "GET", "/plugins", pass, "", ""},
		{"trailing slash", "POST", "/containers/abc/start/", malformed, "", ""},
		{"dot dot", "POST", "/containers/x/../abc/start", malformed, "", ""},
		{"double slash", "POST", "//containers/abc/start", malformed, "", ""},
		{"not a request URI", "POST", "containers/abc/start", malformed, "", ""},
		{"unclean GET passes", "GET", "/containers//json", pass, "", ""},
		{"lower-case method: dockerd routes none", "post", "/containers/abc/start", pass, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := classify(tc.method, tc.uri)
			if r.kind != tc.kind || r.target != tc.target || r.group != tc.group {
				t.Errorf("classify(%s %s) = %+v, want kind %d target %q group %q", tc.method, tc.uri, r, tc.kind, tc.target, tc.group)
			}
		})
	}
}

func TestEngineFixed(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"v2.0.0-beta.24", true}, {"2.0.0", true}, {"29.0.1", true}, {"28.0.0", true},
		{"27.1.1", true}, {"27.1.0", false}, {"27.0.3", false}, {"27.5.1", true},
		{"26.1.5", true}, {"26.1.4", false}, {"26.0.2", false},
		{"25.0.6", true}, {"25.0.5", false}, {"24.0.9", true}, {"24.0.8", false},
		{"23.0.15", true}, {"23.0.14", false}, {"20.10.24", false},
		{"library-import", false}, {"dev", false}, {"", false}, {"27.1", false}, {"27.+1.1", false}, {"19.03.15", false},
		{"28.3.2+dfsg1", true},
	} {
		if ok, why := EngineFixed(tc.v); ok != tc.ok || why == "" {
			t.Errorf("EngineFixed(%q) = %v, %q; want %v", tc.v, ok, why, tc.ok)
		}
	}
}
