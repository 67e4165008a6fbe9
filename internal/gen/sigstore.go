package gen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/policy"
)

// SigstoreRegistry is the registry host of the generated cosign-signed
// repositories (source "cosign").
const SigstoreRegistry = "cosign.example.com"

// SigstoreRepo is generated cosign-signed repository i, whose digests the
// first key signs (rule: that key, threshold 1).
func SigstoreRepo(i int) string { return fmt.Sprintf("%s/apps/svc%04d", SigstoreRegistry, i) }

// SigstoreCriticalRepo is generated cosign-signed repository i of the
// threshold-2 rule: both keys sign its digests but the last (SigstoreDigest
// j = SigstoreDigests-1), which the first key alone signs.
func SigstoreCriticalRepo(i int) string {
	return fmt.Sprintf("%s/critical/svc%04d", SigstoreRegistry, i)
}

// SigstoreDigest is the j-th signed digest of a cosign-signed repository:
// the manifest generated for its tag Tag(j) (Manifest, with config
// ConfigDigest(repo, Tag(j))).
func SigstoreDigest(repo string, j int) digest.Digest { return ManifestDigest(repo, Tag(j)) }

// SigstoreKeyPath is the public key file of generated cosign key k (0 or 1).
func (d *Dataset) SigstoreKeyPath(k int) string {
	return filepath.Join(d.Dir, fmt.Sprintf("cosign%d.pub", k+1))
}

// SigstoreSource returns the cache's sigstore source `source` over
// SigstoreRegistry, verifying with the public keys in pubPEMs (as the
// policy's rules name them: the same key IDs).
func SigstoreSource(cacheDir, source string, pubPEMs ...[]byte) (*cache.SigstoreSource, error) {
	pat, err := policy.ParsePattern(SigstoreRegistry + "/**")
	if err != nil {
		return nil, err
	}
	v := &cosign.Verifier{}
	for _, pemData := range pubPEMs {
		pub, id, err := policy.ParsePublicKey(pemData)
		if err != nil {
			return nil, err
		}
		v.Keys = append(v.Keys, cosign.Key{ID: id, Public: pub})
	}
	return &cache.SigstoreSource{SourceName: source, Dir: SourceDir(cacheDir, source), Repositories: []policy.Pattern{pat}, Verifier: v}, nil
}

// SimpleSigning is cosign's simple-signing payload for digest d of repo,
// as `cosign sign --key` writes it.
func SimpleSigning(repo string, d digest.Digest) []byte {
	var p struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			} `json:"identity"`
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
		Optional map[string]string `json:"optional"`
	}
	p.Critical.Identity.DockerReference = repo
	p.Critical.Image.DockerManifestDigest = string(d)
	p.Critical.Type = "cosign container image signature"
	b, _ := json.Marshal(&p)
	return b
}

// signSimple is a keyed cosign signature of digest d of repo by k.
func signSimple(k *ecdsa.PrivateKey, repo string, d digest.Digest) (cosign.Artifact, error) {
	payload := SimpleSigning(repo, d)
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
	return cosign.Artifact{Payload: payload, Signature: sig}, err
}

// CacheSigstore signs the generated cosign repositories of o with two new
// ECDSA P-256 keys (the private keys are then dropped), writes the public
// keys to keyPaths, and caches the signatures in cacheDir as source
// `source` with cache.SigstoreSource.AddSignatures: each verified, and
// written per repository as `trustd sync` would have. It returns how many
// signatures it cached.
func CacheSigstore(cacheDir, source string, keyPaths [2]string, o DatasetOptions) (int, error) {
	var keys [2]*ecdsa.PrivateKey
	var pubs [2][]byte
	for i := range keys {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return 0, err
		}
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return 0, err
		}
		keys[i], pubs[i] = k, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		if err := os.WriteFile(keyPaths[i], pubs[i], 0o644); err != nil {
			return 0, err
		}
	}
	ss, err := SigstoreSource(cacheDir, source, pubs[0], pubs[1])
	if err != nil {
		return 0, err
	}
	type job struct {
		repo     string
		critical bool
	}
	jobs := make(chan job)
	var (
		mu    sync.Mutex
		errs  []error
		total int
		wg    sync.WaitGroup
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for jb := range jobs {
				n, err := cacheSigstoreRepo(ss, keys, jb.repo, jb.critical, o.SigstoreDigests)
				mu.Lock()
				total += n
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", jb.repo, err))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range o.SigstoreRepos {
		jobs <- job{SigstoreRepo(i), false}
	}
	for i := range o.SigstoreCriticalRepos {
		jobs <- job{SigstoreCriticalRepo(i), true}
	}
	close(jobs)
	wg.Wait()
	return total, errors.Join(errs...)
}

// cacheSigstoreRepo signs and caches the digests of one repository, the
// file written once, with its last digest.
func cacheSigstoreRepo(ss *cache.SigstoreSource, keys [2]*ecdsa.PrivateKey, repo string, critical bool, digests int) (int, error) {
	total := 0
	for j := range digests {
		d := SigstoreDigest(repo, j)
		signers := keys[:1]
		if critical && j < digests-1 {
			signers = keys[:]
		}
		arts := make([]cosign.Artifact, len(signers))
		for i, k := range signers {
			a, err := signSimple(k, repo, d)
			if err != nil {
				return total, err
			}
			arts[i] = a
		}
		sigs, added, err := ss.AddSignatures(repo, d, arts, j == digests-1)
		if err != nil {
			return total, err
		}
		if len(sigs) != len(arts) || added != len(arts) {
			return total, fmt.Errorf("%s: %d of %d signatures verified, %d added", d, len(sigs), len(arts), added)
		}
		total += added
	}
	return total, nil
}
