// Package status holds what trustd reports about itself: the daemon's
// state, each source's trust data, and the outcome of each sync. The daemon
// (control socket, metrics) and the command line (without a daemon) build
// and print the same values. Values are plain data, safe to copy.
package status

import (
	"fmt"
	"time"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/plugin/nri"
	"github.com/trustd/trustd/plugin/selfcheck"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// DaemonStatus is what `trustd status` shows of a running daemon.
type DaemonStatus struct {
	Policy       string      `json:"policy"`
	Mode         string      `json:"mode"`
	PolicyLoaded time.Time   `json:"policy_loaded"`
	ReloadError  string      `json:"reload_error,omitempty"`
	ReloadAt     time.Time   `json:"reload_at,omitzero"`
	NRIConnected bool        `json:"nri_connected"`
	NRISince     time.Time   `json:"nri_since,omitzero"`
	NRIRuntime   string      `json:"nri_runtime,omitempty"`
	NRIMode      nri.NRIMode `json:"nri_mode,omitempty"`
	Warnings     []string    `json:"warnings,omitempty"`
	// ContainerdConfig lists settings of containerd's configuration that
	// let images through without trustd's verdict.
	ContainerdConfig []selfcheck.Finding `json:"containerd_config,omitempty"`
	// ContainerdConfigFile is the file those findings are about, and how
	// trustd knows containerd uses it.
	ContainerdConfigFile *selfcheck.ConfigLocation `json:"containerd_config_file,omitempty"`
	Containerd           string                    `json:"containerd_version,omitempty"`
	ContainerdErr        string                    `json:"containerd_error,omitempty"`
	Sources              []*SourceStatus           `json:"sources"`
	// Docker is the Docker authorization plugin's state; nil when the
	// policy's docker_authz is off.
	Docker *DockerStatus `json:"docker,omitempty"`
}

// DockerStatus is the Docker authorization plugin's state.
type DockerStatus struct {
	Socket  string `json:"socket"`  // where the plugin listens
	Address string `json:"address"` // dockerd's API socket
	Engine  string `json:"engine_version,omitempty"`
	// EngineErr: dockerd could not be asked its version.
	EngineErr string `json:"engine_error,omitempty"`
	// Enforcing: the engine answered and has the fix for CVE-2024-41110.
	Enforcing bool   `json:"enforcing"`
	Note      string `json:"note,omitempty"`
}

// SourceStatus is one source's state in the status.
type SourceStatus struct {
	cache.Status
	Loaded       string    `json:"loaded,omitempty"`
	LoadError    string    `json:"load_error,omitempty"`
	Repositories int       `json:"repositories"`
	Tags         int       `json:"tags"`
	Expires      time.Time `json:"expires,omitzero"`
	ExpiresRole  string    `json:"expires_role,omitempty"`
	Expired      bool      `json:"expired"`
	FreshUntil   time.Time `json:"fresh_until,omitzero"`
	FreshRole    string    `json:"fresh_role,omitempty"`
	// Grace says when decisions rest on offline grace (expired timestamp
	// or snapshot while the source is unreachable), and until when.
	Grace string `json:"grace,omitempty"`
	// PullDiscovered counts the repositories seen at pulls, without trust
	// data, that a Notary source keeps in sync for a while (in memory).
	PullDiscovered int `json:"pull_discovered_repositories,omitempty"`
}

// SourceStatuses combines the cache's recorded sync status with the
// loaded index of each source.
func SourceStatuses(p *policy.Policy, store *cache.Store, ix *verify.Index, now time.Time) []*SourceStatus {
	var out []*SourceStatus
	for _, cs := range store.Statuses() {
		ss := &SourceStatus{Status: *cs, PullDiscovered: store.PullDiscovered(cs.Source, now)}
		if si := ix.Source(cs.Source); si != nil {
			if si.Err != nil {
				ss.LoadError = si.Err.Error()
			}
			ss.Loaded = si.Version
			ss.Repositories, ss.Tags = si.NumRepos(), si.NumTags()
			for _, part := range si.Parts() {
				for i := 0; i < part.Len(); i++ {
					r := part.RepoAt(i)
					if exp := r.Expires(); ss.Expires.IsZero() || exp.Before(ss.Expires) {
						ss.Expires, ss.ExpiresRole = exp, r.ExpiresRole()
					}
					if fresh := r.FreshUntil(); !fresh.IsZero() && (ss.FreshUntil.IsZero() || fresh.Before(ss.FreshUntil)) {
						ss.FreshUntil, ss.FreshRole = fresh, r.FreshRole()
					}
				}
			}
			ss.Expired = !ss.Expires.IsZero() && now.After(ss.Expires)
			if !ss.FreshUntil.IsZero() && now.After(ss.FreshUntil) {
				grace := p.OfflineGraceFor(cs.Source)
				end := ss.FreshUntil.Add(grace)
				if si.Unreachable && grace > 0 && now.Before(end) {
					ss.Grace = fmt.Sprintf("in use: %s expired at %s, source unreachable since %s; grace ends %s", ss.FreshRole, ss.FreshUntil.UTC().Format(time.RFC3339), si.UnreachableSince.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
				} else {
					ss.Expired = true
					ss.Expires, ss.ExpiresRole = ss.FreshUntil, ss.FreshRole
				}
			}
		}
		out = append(out, ss)
	}
	return out
}
