package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// blobs is a content store at the edge: bytes by digest, reads counted.
type blobs struct {
	m     map[digest.Digest][]byte
	reads int
}

func (b *blobs) ReadBlob(_ context.Context, d digest.Digest) ([]byte, error) {
	b.reads++
	if data, ok := b.m[d]; ok {
		return data, nil
	}
	return nil, fmt.Errorf("%s: %w", d, errors.New("not found"))
}

// TestResolverRemembersMisses: a digest no reader has is not read again
// for each decision that asks (a sigstore denial asks of every signed
// digest of the repository), until content may have arrived
// (ContentAdded: an image event, a sync, a fetch) or missTTL passed; then
// a digest pulled since is found.
func TestResolverRemembersMisses(t *testing.T) {
	manifest := []byte(`{"schemaVersion":2,"config":{"digest":"` + string(digest.FromString("config")) + `"}}`)
	d := digest.FromBytes(manifest)
	store := &blobs{m: map[digest.Digest][]byte{}}
	now := time.Unix(1_800_000_000, 0)
	r := &Resolver{Readers: []BlobReader{store}, clock: func() time.Time { return now }}

	if _, ok := r.Covered(d); ok {
		t.Fatal("found content that is not there")
	}
	reads := store.reads
	for range 10 {
		r.Covered(d)
	}
	if store.reads != reads {
		t.Errorf("a remembered miss was read again %d times", store.reads-reads)
	}

	// The image is pulled; its event says content may have arrived.
	store.m[d] = manifest
	if _, ok := r.Covered(d); ok {
		t.Fatal("the miss was forgotten without a reason")
	}
	r.ContentAdded()
	if c, ok := r.Covered(d); !ok || len(c) != 2 {
		t.Fatalf("after ContentAdded: %v, %v", c, ok)
	}

	// Without an event, a miss is read again after missTTL.
	other := digest.FromString("other")
	r.Covered(other)
	reads = store.reads
	now = now.Add(missTTL + time.Second)
	r.Covered(other)
	if store.reads == reads {
		t.Error("a miss older than missTTL was not read again")
	}
}
