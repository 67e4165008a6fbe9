package packaging

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// loadYAML parses every document of the manifests with a YAML library
// and returns them as JSON-decoded values.
func loadYAML(t *testing.T, files ...string) []map[string]any {
	t.Helper()
	var docs []map[string]any
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(fh)
		for {
			var d map[string]any
			err := dec.Decode(&d)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fh.Close()
				t.Fatalf("parsing %s: %v", f, err)
			}
			if d == nil {
				continue
			}
			// Round-trip through JSON so that numbers and nesting look as
			// they would to the API server.
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var j map[string]any
			if err := json.Unmarshal(b, &j); err != nil {
				t.Fatal(err)
			}
			j["__file__"] = f
			docs = append(docs, j)
		}
		fh.Close()
	}
	return docs
}

// get walks maps and lists: get(v, "spec", "template", 0, ...).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestKubernetesManifests(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "packaging", "kubernetes")
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) < 4 {
		t.Fatalf("manifests in %s: %v", dir, files)
	}
	docs := loadYAML(t, files...)
	byKind := map[string]map[string]any{}
	for _, d := range docs {
		kind, _ := d["kind"].(string)
		name, _ := get(d, "metadata", "name").(string)
		if kind == "" || name == "" || d["apiVersion"] == nil {
			t.Errorf("%s: a document without apiVersion, kind or metadata.name", d["__file__"])
			continue
		}
		switch kind {
		case "Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
		default:
			if ns := get(d, "metadata", "namespace"); ns != "trustd-system" {
				t.Errorf("%s %s: namespace %v, want trustd-system", kind, name, ns)
			}
		}
		byKind[kind] = d
	}
	for _, k := range []string{"Namespace", "ConfigMap", "DaemonSet", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		if byKind[k] == nil {
			t.Errorf("no %s", k)
		}
	}
	ds := byKind["DaemonSet"]
	if ds == nil {
		t.FailNow()
	}
	pod := get(ds, "spec", "template", "spec").(map[string]any)

	if pod["priorityClassName"] != "system-node-critical" {
		t.Errorf("priorityClassName %v", pod["priorityClassName"])
	}
	for _, k := range []string{"hostPID", "hostIPC", "hostNetwork"} {
		if pod[k] == true {
			t.Errorf("%s is true", k)
		}
	}
	tolerateAll := false
	for _, tol := range get(pod, "tolerations").([]any) {
		m := tol.(map[string]any)
		if m["operator"] == "Exists" && m["key"] == nil && m["effect"] == nil {
			tolerateAll = true
		}
	}
	if !tolerateAll {
		t.Error("the DaemonSet does not tolerate every taint")
	}
	if get(ds, "spec", "updateStrategy", "rollingUpdate", "maxSurge") != float64(0) {
		t.Error("maxSurge must be 0: a second trustd on a node refuses to start while the first holds the control socket")
	}

	volumes := map[string]map[string]any{}
	for _, v := range get(pod, "volumes").([]any) {
		m := v.(map[string]any)
		volumes[m["name"].(string)] = m
	}
	hostPaths := map[string]string{} // mount path in the container → host path
	var containers []any
	containers = append(containers, get(pod, "initContainers").([]any)...)
	containers = append(containers, get(pod, "containers").([]any)...)
	for _, c := range containers {
		c := c.(map[string]any)
		name := c["name"]
		sc, _ := c["securityContext"].(map[string]any)
		if sc["privileged"] != false || sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true || sc["runAsUser"] != float64(0) {
			t.Errorf("container %v: securityContext %v; want privileged and allowPrivilegeEscalation false, readOnlyRootFilesystem true, runAsUser 0", name, sc)
		}
		drop, _ := get(sc, "capabilities", "drop").([]any)
		if !slices.Contains(drop, any("ALL")) || get(sc, "capabilities", "add") != nil {
			t.Errorf("container %v: capabilities %v; want drop [ALL] and no add", name, sc["capabilities"])
		}
		for _, vm := range c["volumeMounts"].([]any) {
			vm := vm.(map[string]any)
			v := volumes[vm["name"].(string)]
			if v == nil {
				t.Errorf("container %v mounts undefined volume %v", name, vm["name"])
				continue
			}
			if hp, ok := get(v, "hostPath", "path").(string); ok && name == "trustd" {
				hostPaths[vm["mountPath"].(string)] = hp
			}
		}
	}
	// The daemon sees the host paths at the paths of its policy defaults,
	// so that the policy file is the same on the host and in the pod.
	for mount, host := range map[string]string{
		"/etc/trustd":                    "/etc/trustd",
		"/var/lib/trustd":                "/var/lib/trustd",
		"/run/trustd":                    "/run/trustd",
		"/var/run/nri":                   "/var/run/nri",
		"/run/containerd":                "/run/containerd",
		"/etc/containerd":                "/etc/containerd",
		"/opt/containerd/image-verifier": "/opt/containerd/image-verifier",
	} {
		if hostPaths[mount] != host {
			t.Errorf("trustd container: %s mounts host %q, want %q", mount, hostPaths[mount], host)
		}
	}
	install := get(pod, "initContainers", 0, "command", 2)
	if s, _ := install.(string); !strings.Contains(s, "policy check") || !strings.Contains(s, "/usr/libexec/trustd/trustd-verifier") || !strings.Contains(s, "/usr/bin/trustd ") ||
		!strings.Contains(s, "ln -sfn ../libexec/trustd-verifier ") || !strings.Contains(s, "/host/image-verifier/bin/trustd-verifier") {
		t.Errorf("the init container does not check the policy and install trustd-verifier (linked to libexec/, with trustd beside it): %v", install)
	}

	// The policy in the ConfigMap is valid for this trustd.
	policyText, _ := get(byKind["ConfigMap"], "data", "policy.toml").(string)
	if policyText == "" {
		t.Fatal("ConfigMap has no policy.toml")
	}
	_, dist := buildPackage(t)
	p := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(p, []byte(policyText), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, "", nil, filepath.Join(dist, "trustd"), "policy", "check", p)
	t.Logf("trustd policy check (ConfigMap): %s", strings.TrimSpace(out))
	if ann := get(ds, "spec", "template", "metadata", "annotations", "tolerate-missing-nri-plugins.noderesource.dev"); ann != "true" {
		t.Errorf("the trustd pod does not carry the toleration annotation of README option B: %v", ann)
	}
	if exempt := get(byKind["ValidatingAdmissionPolicyBinding"], "spec", "matchResources", "namespaceSelector", "matchExpressions", 0, "values"); !slices.Contains(exempt.([]any), any("trustd-system")) {
		t.Errorf("the admission policy binding does not exempt trustd-system: %v", exempt)
	}
}
