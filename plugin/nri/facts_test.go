package nri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustd/trustd/plugin/engine"

	"github.com/containerd/nri/pkg/api"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// fakeStore is containerd's image store at the edge: records by name, the
// chain ID of each config, and the root filesystem of each container.
type fakeStore struct {
	images []StoreImage
	chains map[digest.Digest]string // config → chain ID
	rootfs map[string]string        // container ID → chain ID of its parent
}

func (s *fakeStore) Image(_ context.Context, name string) (StoreImage, error) {
	for _, si := range s.images {
		if si.Name == name {
			return si, nil
		}
	}
	return StoreImage{}, fmt.Errorf("%w: %s", ErrNotInStore, name)
}

func (s *fakeStore) Images(context.Context) ([]StoreImage, error) { return s.images, nil }

func (s *fakeStore) ContainerChain(_ context.Context, id string) (string, error) {
	if c, ok := s.rootfs[id]; ok {
		return c, nil
	}
	return "", errors.New("no snapshot " + id)
}

func (s *fakeStore) ChainID(_ context.Context, cfg digest.Digest) (string, error) {
	if c, ok := s.chains[cfg]; ok {
		return c, nil
	}
	return "", errors.New("no config " + string(cfg))
}

// factsWorld is a node: a policy, signed data for two images, and a store
// holding them, an unsigned image, a pause image and a dev image.
type factsWorld struct {
	engine *engine.Engine
	store  *fakeStore
	log    *bytes.Buffer
}

func sha(s string) digest.Digest { return digest.FromString(s) }

func newFactsWorld(t *testing.T) *factsWorld {
	t.Helper()
	// A TUF source, verify rules (one for a namespace only), allow rules
	// (one for a namespace only), deny the rest.
	doc, err := os.ReadFile(filepath.Join("testdata", "facts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("policy.toml", doc)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	corp := verify.NewSourceIndex("corp", "tuf", map[string]*verify.Repo{
		"registry.example.com/apps/web": {Source: "corp", Name: "registry.example.com/apps/web", Expires: exp,
			Tags: map[string]verify.RoleTargets{"1": {"targets": {Digest: sha("web-manifest"), Length: 10}}}},
		"registry.example.com/team/tool": {Source: "corp", Name: "registry.example.com/team/tool", Expires: exp,
			Tags: map[string]verify.RoleTargets{"1": {"targets": {Digest: sha("tool-manifest"), Length: 10}}}},
	})
	var buf bytes.Buffer
	e := &engine.Engine{Log: slog.New(slog.NewJSONHandler(&buf, nil))}
	e.Swap(&engine.Snapshot{Policy: p, Index: verify.NewIndex(corp)})
	store := &fakeStore{
		images: []StoreImage{
			{Name: "registry.example.com/apps/web:1", Target: sha("web-manifest"), Config: sha("web-config")},
			{Name: "sha256:" + sha("web-config").Encoded(), Target: sha("web-manifest"), Config: sha("web-config")},
			{Name: "registry.example.com/team/tool:1", Target: sha("tool-manifest"), Config: sha("tool-config")},
			{Name: "registry.example.com/apps/evil:1", Target: sha("evil-manifest"), Config: sha("evil-config")},
			{Name: "sha256:" + sha("evil-config").Encoded(), Target: sha("evil-manifest"), Config: sha("evil-config")},
			{Name: "registry.k8s.io/pause:3.10", Target: sha("pause-manifest"), Config: sha("pause-config")},
			{Name: "registry.example.com/dev/x:1", Target: sha("dev-manifest"), Config: sha("dev-config")},
			{Name: "sha256:" + sha("orphan-config").Encoded(), Target: sha("orphan-manifest"), Config: sha("orphan-config")},
		},
		chains: map[digest.Digest]string{
			sha("web-config"): "chain-web", sha("tool-config"): "chain-tool", sha("evil-config"): "chain-evil",
			sha("pause-config"): "chain-pause", sha("dev-config"): "chain-dev", sha("orphan-config"): "chain-orphan",
		},
		rootfs: map[string]string{},
	}
	return &factsWorld{engine: e, store: store, log: &buf}
}

// container is what NRI sends for a container created from config (the
// image the CRI request's image ID names) claiming name: with
// container.image on 2.4, without (the root filesystem only) before.
func (w *factsWorld) container(v24 bool, id, name string, config digest.Digest, annotations map[string]string, mounts ...*api.Mount) *api.Container {
	ann := map[string]string{AnnotationImageName: name}
	for k, v := range annotations {
		ann[k] = v
	}
	c := &api.Container{Id: id, Name: "c-" + id, Annotations: ann, Mounts: mounts}
	if v24 {
		c.Image = &api.Image{Name: name, ConfigDigest: string(config)}
	} else {
		w.store.rootfs[id] = w.store.chains[config]
	}
	return c
}

func volume(dst, manifest string, sub ...string) *api.Mount {
	src := "/run/containerd/io.containerd.grpc.v1.cri/image-volumes/" + strings.Repeat("ab", 32) + "/" + manifest
	for _, s := range sub {
		src += "/" + s
	}
	return &api.Mount{Destination: dst, Source: src, Type: "bind", Options: []string{"rbind", "ro"}}
}

// TestContainerFactsBindNameToImage covers the claims a CRI request (or a
// device plugin, a DRA driver) can make about a container's image and
// namespace, on containerd 2.4 (container.image in NRI) and 2.2/2.3 (the
// root filesystem's layers only), and the image volumes a container
// mounts. Every case where allowed is false was allowed by the code before
// names were bound to images and volumes were judged.
func TestContainerFactsBindNameToImage(t *testing.T) {
	web, evil, tool, dev, pause := sha("web-config"), sha("evil-config"), sha("tool-config"), sha("dev-config"), sha("pause-config")
	tests := []struct {
		name    string
		ns      string
		image   string // the claimed name
		config  digest.Digest
		ann     map[string]string
		mounts  []*api.Mount
		adjust  []*api.Mount
		allowed bool
		want    []string // fragments of the message
	}{
		{name: "signed image under its own name", ns: "default", image: "registry.example.com/apps/web:1", config: web, allowed: true},
		{name: "unsigned image claiming an allow-listed name", ns: "default", image: "registry.k8s.io/pause:3.10", config: evil,
			want: []string{"claims image registry.k8s.io/pause:3.10", string(pause), "not the image that runs"}},
		{name: "unsigned image claiming a signed name", ns: "default", image: "registry.example.com/apps/web:1", config: evil,
			want: []string{"claims image registry.example.com/apps/web:1", "not the image that runs"}},
		{name: "unsigned image claiming a name the store does not hold", ns: "default", image: "registry.k8s.io/pause:9.9", config: evil,
			want: []string{"registry.k8s.io/pause:9.9", "does not hold"}},
		{name: "allow-listed image under its own name", ns: "default", image: "registry.k8s.io/pause:3.10", config: pause, allowed: true},
		{name: "namespace claimed by annotation is ignored", ns: "", image: "registry.example.com/dev/x:1", config: dev,
			ann: map[string]string{AnnotationNamespace: "dev"}, want: []string{"denied registry.example.com/dev/x:1"}},
		{name: "the pod's namespace decides", ns: "dev", image: "registry.example.com/dev/x:1", config: dev,
			ann: map[string]string{AnnotationNamespace: "default"}, allowed: true},
		{name: "image ID judged under the store's names", ns: "default", image: "sha256:" + web.Encoded(), config: web, allowed: true},
		{name: "short image ID judged under the store's names", ns: "default", image: web.Encoded()[:12], config: web, allowed: true},
		{name: "unsigned image ID", ns: "default", image: "sha256:" + evil.Encoded(), config: evil,
			want: []string{"registry.example.com/apps/evil:1", "not signed"}},
		{name: "image ID of another image than the one created", ns: "default", image: "sha256:" + web.Encoded(), config: evil,
			want: []string{"claims image ID", "not the image it is created from"}},
		{name: "image ID with no repository name", ns: "default", image: "sha256:" + sha("orphan-config").Encoded(), config: sha("orphan-config"),
			want: []string{"no repository name"}},
		{name: "signed image volume", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{volume("/tools", sha("web-manifest").Encoded())}, allowed: true},
		{name: "unsigned image volume", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{volume("/tools", sha("evil-manifest").Encoded())},
			want:   []string{"image volume /tools from registry.example.com/apps/evil:1", "not signed"}},
		{name: "unsigned image volume with a sub path", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{volume("/tools", sha("evil-manifest").Encoded(), "bin")},
			want:   []string{"image volume /tools from registry.example.com/apps/evil:1"}},
		{name: "namespace-restricted image volume outside its namespace", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{volume("/tools", sha("tool-manifest").Encoded())},
			want:   []string{"image volume /tools from registry.example.com/team/tool:1", "in namespace default"}},
		{name: "namespace-restricted image volume in its namespace", ns: "team", image: "registry.example.com/team/tool:1", config: tool,
			mounts: []*api.Mount{volume("/tools", sha("tool-manifest").Encoded())}, allowed: true},
		{name: "image volume added by another NRI plugin", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			adjust: []*api.Mount{volume("/extra", sha("evil-manifest").Encoded())},
			want:   []string{"image volume /extra from registry.example.com/apps/evil:1"}},
		{name: "image volume not in the store", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{volume("/tools", sha("gone").Encoded())}, want: []string{"image volume /tools", "no such image"}},
		{name: "image volume path that names no manifest", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{{Destination: "/x", Source: "/run/cri/image-volumes/" + strings.Repeat("cd", 32) + "/not-a-digest"}}, want: []string{"looks like an image volume"}},
		{name: "image volume path that names no manifest at all", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{{Destination: "/x", Source: "/run/cri/image-volumes/" + strings.Repeat("cd", 32)}}, want: []string{"looks like an image volume"}},
		{name: "a host directory named image-volumes is no image volume", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{{Destination: "/photos", Source: "/srv/image-volumes/photos"}}, allowed: true},
		{name: "image volume path spelled with dots", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{{Destination: "/x", Source: "/run/cri/x/../image-volumes/" + strings.Repeat("ef", 32) + "/" + sha("evil-manifest").Encoded() + "/."}},
			want:   []string{"image volume /x from registry.example.com/apps/evil:1"}},
		{name: "ordinary mounts are not image volumes", ns: "default", image: "registry.example.com/apps/web:1", config: web,
			mounts: []*api.Mount{{Destination: "/etc/hosts", Source: "/var/lib/containerd/sandboxes/x/hosts"}}, allowed: true},
	}
	for _, v24 := range []bool{true, false} {
		for i, tc := range tests {
			t.Run(fmt.Sprintf("2.4=%v/%s", v24, tc.name), func(t *testing.T) {
				w := newFactsWorld(t)
				pl := &NRIPlugin{Engine: w.engine, Images: w.store, Log: slog.New(slog.DiscardHandler)}
				pod := &api.PodSandbox{Id: "pod", Name: "p", Namespace: tc.ns}
				ctr := w.container(v24, fmt.Sprintf("ctr%d", i), tc.image, tc.config, tc.ann, tc.mounts...)
				var adj *api.ContainerAdjustment
				if tc.adjust != nil {
					adj = &api.ContainerAdjustment{Mounts: tc.adjust}
				}
				err := pl.decideContainer(context.Background(), pod, ctr, adj, engine.ViaNRI)
				if tc.allowed != (err == nil) {
					t.Fatalf("allowed = %v (%v), want %v\nlog:\n%s", err == nil, err, tc.allowed, w.log)
				}
				if err != nil && !errors.Is(err, verify.ErrDenied) {
					t.Errorf("error %v is not a denial", err)
				}
				if err != nil {
					t.Logf("%v", err)
				}
				for _, frag := range tc.want {
					if !strings.Contains(err.Error(), frag) {
						t.Errorf("message %q lacks %q", err, frag)
					}
				}
				// The log never records an allow for a name that is not
				// the image that runs.
				if !tc.allowed && strings.Contains(w.log.String(), `"decision":"allow","image":"`+tc.image) && tc.config != configOf(w.store, tc.image) {
					t.Errorf("log records an allow for %s:\n%s", tc.image, w.log)
				}
			})
		}
	}
}

func configOf(s *fakeStore, name string) digest.Digest {
	si, _ := s.Image(context.Background(), name)
	return si.Config
}

// podIn is a pod sandbox named name in namespace "default".
func podIn(name string) *api.PodSandbox {
	return &api.PodSandbox{Id: name, Name: name, Namespace: "default"}
}

// staleStore answers Image from a memo that still holds what a name was
// bound to before it moved, until ForgetName (as plugin/ctrd's memo may
// for an instant, before the image event arrives).
type staleStore struct {
	fakeStore
	stale  map[string]StoreImage
	forgot []string
}

func (s *staleStore) Image(ctx context.Context, name string) (StoreImage, error) {
	if si, ok := s.stale[name]; ok {
		return si, nil
	}
	return s.fakeStore.Image(ctx, name)
}

func (s *staleStore) ForgetName(name string) {
	delete(s.stale, name)
	s.forgot = append(s.forgot, name)
}

// TestStaleNameMemoAsksTheStore: a memoised binding that does not match
// the image that runs is checked with the store itself before a denial,
// so a tag moved an instant ago is judged as the store binds it now.
func TestStaleNameMemoAsksTheStore(t *testing.T) {
	name := "registry.example.com/apps/web:1"
	old, cur := sha("old-config"), sha("new-config")
	s := &staleStore{
		fakeStore: fakeStore{images: []StoreImage{{Name: name, Target: sha("new-manifest"), Config: cur}}},
		stale:     map[string]StoreImage{name: {Name: name, Target: sha("old-manifest"), Config: old}},
	}
	ctr := &api.Container{Id: "c1", Name: "web", Annotations: map[string]string{AnnotationImageName: name},
		Image: &api.Image{ConfigDigest: string(cur)}}
	j := containerImage(context.Background(), s, "default", ctr)
	if j.Err != nil || len(j.Candidates) != 1 || j.Candidates[0].ConfigDigest != cur {
		t.Fatalf("judged %+v, %v; want the name under config %s", j.Candidates, j.Err, cur)
	}
	if len(s.forgot) != 1 || s.forgot[0] != name {
		t.Errorf("forgot %v", s.forgot)
	}
	// An image that the store (not only the memo) binds elsewhere is still
	// not the image that runs.
	ctr.Image.ConfigDigest = string(sha("evil-config"))
	if j := containerImage(context.Background(), s, "default", ctr); j.Err == nil || !strings.Contains(j.Err.Error(), "not the image that runs") {
		t.Errorf("evil config: %v", j.Err)
	}
}
