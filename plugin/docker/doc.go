// Package docker is trustd's Docker Engine authorization plugin: a legacy
// socket plugin (never a managed one, which the API can disable) that
// dockerd asks before and after every API call (`--authorization-plugin`,
// or "authorization-plugins" in daemon.json). It speaks Docker's plugin
// protocol over a Unix socket: POST /Plugin.Activate, /AuthZPlugin.AuthZReq
// and /AuthZPlugin.AuthZRes.
//
// What it guarantees, for an engine with the CVE-2024-41110 fix that keeps
// its images in containerd's store (an image ID is then the manifest or
// index digest):
//
//   - A container starts (`start`, `restart`, `unpause`) or runs a process
//     (`exec` create and start) only when its own image — the container's
//     `.Image`, fixed at create — is allowed by the policy, judged by
//     digest against the trust data of each repository the engine names
//     it under, through plugin/engine (engine.ViaDocker). Docker has no
//     Kubernetes namespace: the image is judged with namespace "", so only
//     rules without a `namespaces` restriction apply.
//   - `containers/create` is judged too, for an early, readable refusal; a
//     body that dockerd could read differently (a duplicate key, or a key
//     that differs from another only in case) is refused.
//   - The endpoints that run containers without `create` and `start`
//     (build, BuildKit, swarm, managed plugins) are refused unless the
//     policy's docker_allow lets their group through.
//   - Every answer comes within the plugin's deadline: when a decision or
//     a call back into dockerd takes longer, the request is refused.
//     Failing closed everywhere: an error deciding refuses; dockerd itself
//     refuses every call while the plugin is down.
//
// Everything else (listing, inspecting, pulling, loading, stopping,
// removing) is allowed: images are judged where they run, not where they
// arrive. A Plugin is safe for concurrent use and serves requests
// concurrently (its calls back into dockerd are themselves authorized).
package docker
