package ctrd

import (
	"sync"

	"github.com/trustd/trustd/plugin/nri"
)

// maxNames bounds the name memo; past it, it starts afresh.
const maxNames = 4096

// nameMemo remembers what containerd's store binds names to (Image), so
// that the name binding of a container decision need not ask containerd
// each time. It lives only while the image watcher is subscribed to the
// store's image events, which invalidate a name as they arrive; every
// event also bumps gen, so that a lookup that started before an event
// cannot store what it read (it may predate the event).
//
// A stale entry can only be a binding the store held until moments ago:
// the decision then judges that image under the name, as it would have an
// instant earlier, and the trust data still decides whether that image is
// signed for the name. A name the store no longer binds to the image that
// runs is denied as before, at worst until its event arrives.
type nameMemo struct {
	mu  sync.Mutex
	m   map[string]nri.StoreImage
	gen uint64
}

func (n *nameMemo) get(name string) (nri.StoreImage, uint64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	si, ok := n.m[name]
	return si, n.gen, ok
}

func (n *nameMemo) put(name string, si nri.StoreImage, gen uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gen != gen {
		return // an event came while it was read: it may be stale
	}
	if len(n.m) >= maxNames {
		n.m = map[string]nri.StoreImage{}
	}
	n.m[name] = si
}

func (n *nameMemo) forget(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.m, name)
	n.gen++
}

// TrackNames starts memoising Image; the caller must then call
// ForgetName for every image event of the namespace (create, update,
// delete) as it arrives, and UntrackNames when it stops receiving them.
func (c *Containerd) TrackNames() {
	c.names.Store(&nameMemo{m: map[string]nri.StoreImage{}})
}

// UntrackNames stops memoising Image and drops the memo.
func (c *Containerd) UntrackNames() { c.names.Store(nil) }

// ForgetName invalidates what the memo holds for name.
func (c *Containerd) ForgetName(name string) {
	if n := c.names.Load(); n != nil {
		n.forget(name)
	}
}
