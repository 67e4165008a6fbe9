// Package packaging tests what trustd ships to nodes, as an operator gets it:
// the systemd unit (systemd-analyze verify and security), the .deb that
// `make package` builds (its files, modes, link, conffile and maintainer
// scripts, an install, upgrade, removal and purge with dpkg into a scratch
// root, and lintian), the Kubernetes manifests, and that the project's license
// (Apache-2.0) is stated in LICENSE, the copyright file and the README.
//
// The tests need Debian's systemd (systemd-analyze), dpkg, make, git
// and lintian (test/tools.sh installs them). A missing tool skips the tests that need
// it, or fails them when CI=true.
package packaging
