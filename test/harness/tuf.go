package harness

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/internal/testtuf"
)

// TUFExpiry is how long the metadata a TUFRepo signs stays valid.
const TUFExpiry = 30 * 24 * time.Hour

// TUFRepo is a standard TUF repository (testtuf.Repo: root, targets,
// snapshot, timestamp, optional delegated targets roles), signed with
// ed25519 keys made for the test, written to a directory and served over
// HTTP on 127.0.0.1 at URL(). consistent_snapshot is false: the metadata is
// served as root.json (and <N>.root.json), timestamp.json, snapshot.json,
// targets.json, <role>.json.
//
// Targets name images: "<normalised repository>:<tag>" with the length and
// sha256 of the manifest (or index) bytes. Changes take effect on Publish.
// Methods are safe for concurrent use.
type TUFRepo struct {
	*testtuf.Repo

	mu     sync.Mutex
	addr   string
	srv    *http.Server
	served chan struct{} // closed when srv.Serve returns
}

// NewTUFRepo creates, signs, writes and serves a new repository whose
// version 1 of every role has no targets. It stops serving on cleanup.
func NewTUFRepo(t TB) *TUFRepo {
	t.Helper()
	repo, err := testtuf.New(t.TempDir(), testtuf.Options{Expires: time.Now().Add(TUFExpiry)})
	if err == nil {
		err = repo.Publish()
	}
	if err != nil {
		t.Fatalf("TUF repository: %v", err)
	}
	r := &TUFRepo{Repo: repo}
	if err := r.Start(); err != nil {
		t.Fatalf("TUF repository: %v", err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	return r
}

// URL is the base URL of the metadata, ending in "/": <URL>timestamp.json.
func (r *TUFRepo) URL() string { return "http://" + r.addr + "/metadata/" }

// SetTarget signs manifest (image manifest or index bytes) for target name
// ("<normalised repository>:<tag>") in the top-level targets role.
func (r *TUFRepo) SetTarget(name string, manifest []byte) {
	r.SetTargetDigest(name, digest.FromBytes(manifest), int64(len(manifest)))
}

// SetTargetDigest signs a manifest known by its sha256 digest and length for
// target name in the top-level targets role. It panics on a digest that is
// not sha256.
func (r *TUFRepo) SetTargetDigest(name string, d digest.Digest, length int64) {
	r.setTarget(metadata.TARGETS, name, d, length)
}

// SetDelegatedTarget signs manifest for target name in the delegated role.
// It panics if AddDelegation did not create the role.
func (r *TUFRepo) SetDelegatedTarget(role, name string, manifest []byte) {
	r.setTarget(role, name, digest.FromBytes(manifest), int64(len(manifest)))
}

func (r *TUFRepo) setTarget(role, name string, d digest.Digest, length int64) {
	if err := r.SetRoleTarget(role, name, d, length); err != nil {
		panic("TUFRepo: " + err.Error())
	}
}

// PublishFile signs signed as target name (a file, such as Sigstore's
// trusted_root.json, not an image), serves served as its content under
// <URL>targets/ (other bytes than signed: a tampered target), and
// publishes new metadata.
func (r *TUFRepo) PublishFile(t TB, name string, signed, served []byte) {
	t.Helper()
	dir := filepath.Join(r.Dir(), "targets")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("TUF repository: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), served, 0o644); err != nil {
		t.Fatalf("TUF repository: %v", err)
	}
	r.SetTarget(name, signed)
	if err := r.Publish(); err != nil {
		t.Fatalf("TUF repository: %v", err)
	}
}

// AddDelegation delegates the target paths (TUF glob patterns, matched per
// "/"-separated segment, e.g. "127.0.0.1:5000/team/*") from the top-level
// targets role to a new role with its own key. It panics if the role
// exists.
func (r *TUFRepo) AddDelegation(role string, paths []string) {
	if err := r.Repo.AddDelegation(role, paths); err != nil {
		panic("TUFRepo: " + err.Error())
	}
}

// Start serves the metadata, on the address it had before if it was stopped.
func (r *TUFRepo) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		return errors.New("TUF server already running")
	}
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("TUF server: %w", err)
	}
	r.addr = l.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET /metadata/", http.StripPrefix("/metadata/", http.FileServer(noDirFS{http.Dir(r.Dir())})))
	r.srv = &http.Server{Handler: mux}
	r.served = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("harness: TUF server: %v", err)
		}
	}(r.srv, r.served)
	return nil
}

// Stop stops serving: clients then fail to connect, as with a trust server
// that is down. Start serves again on the same address.
func (r *TUFRepo) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		return nil
	}
	err := r.srv.Close()
	<-r.served
	r.srv = nil
	return err
}

// noDirFS serves files only: a directory listing is not metadata.
type noDirFS struct{ fs http.FileSystem }

func (n noDirFS) Open(name string) (http.File, error) {
	f, err := n.fs.Open(name)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || fi.IsDir() {
		f.Close()
		return nil, os.ErrNotExist
	}
	return f, nil
}
