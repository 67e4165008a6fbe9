package cache

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Clock is a monotonic floor under the wall clock: it never returns a
// time earlier than the latest time it has seen and persisted, so that a
// clock set back cannot make expired trust data look fresh again. It is
// safe for concurrent use.
type Clock struct {
	path string
	// Wall is the wall clock; nil means time.Now.
	Wall func() time.Time

	mu        sync.Mutex
	floor     time.Time
	persisted time.Time
}

type clockFile struct {
	Latest time.Time `json:"latest"`
}

// OpenClock loads the floor persisted in dir (none yet is fine).
func OpenClock(dir string) *Clock {
	c := &Clock{path: filepath.Join(dir, "clock.json")}
	if b, err := readFileLimit(c.path, 4096); err == nil {
		var f clockFile
		if json.Unmarshal(b, &f) == nil {
			c.floor, c.persisted = f.Latest, f.Latest
		}
	}
	return c
}

func (c *Clock) wall() time.Time {
	if c.Wall != nil {
		return c.Wall()
	}
	return time.Now()
}

// Now returns the wall clock, or the floor when the wall clock is behind it.
func (c *Clock) Now() time.Time {
	n := c.wall()
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.Before(c.floor) {
		return c.floor
	}
	return n
}

// SetBack reports whether the wall clock is behind the floor, and by how much.
func (c *Clock) SetBack() (bool, time.Duration) {
	n := c.wall()
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.Before(c.floor) {
		return true, c.floor.Sub(n)
	}
	return false, 0
}

// Observe raises the floor to the current time and persists it (at most
// once a minute, atomically).
func (c *Clock) Observe() error {
	n := c.Now()
	c.mu.Lock()
	if n.After(c.floor) {
		c.floor = n
	}
	if c.floor.Sub(c.persisted) < time.Minute && !c.persisted.IsZero() {
		c.mu.Unlock()
		return nil
	}
	floor := c.floor
	c.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(clockFile{Latest: floor.UTC()})
	if err := WriteFileAtomic(c.path, b, 0o600); err != nil {
		return err
	}
	c.mu.Lock()
	c.persisted = floor
	c.mu.Unlock()
	return nil
}
