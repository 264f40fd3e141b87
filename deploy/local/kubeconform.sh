#!/usr/bin/env bash
# kubeconform (yannh/kubeconform), which `make test` runs over the production manifests (deploy/production,
# tests/unit/test_production_manifests.py). Built from the Go module proxy into .local/bin/kubeconform (Go from
# PATH, /usr/local/go, or Debian's golang-go); about 5 s with a warm module cache, a few more without. Skipped
# while the binary of this version is there. Run by install.sh. Safe to re-run.
source "$(dirname "$0")/lib.sh"

KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
bin="$LOCAL/bin/kubeconform"
stamp="$LOCAL/bin/.kubeconform-$KUBECONFORM_VERSION"
[[ -x "$bin" && -f "$stamp" ]] && exit 0

go="$(command -v go || true)"
[[ -n "$go" || ! -x /usr/local/go/bin/go ]] || go=/usr/local/go/bin/go
if [[ -z "$go" ]]; then
  [[ $EUID -eq 0 ]] || die "kubeconform needs Go to build: run as root once (installs golang-go), or install Go"
  say "installing golang-go from Debian's packages (to build kubeconform)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >/dev/null
  go="$(command -v go)"
fi

say "building kubeconform $KUBECONFORM_VERSION from the Go module proxy"
mkdir -p "$LOCAL/bin"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# No HOME (so no default caches): keep Go's module and build caches under .local/go (writable: rm -rf works).
if [[ -z "${HOME:-}" ]]; then export GOPATH="$LOCAL/go" GOCACHE="$LOCAL/go/cache"; fi
GOBIN="$tmp" GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0 \
  "$go" install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >"$LOGS/kubeconform-build.log" 2>&1 \
  || die "go install of kubeconform $KUBECONFORM_VERSION failed; see $LOGS/kubeconform-build.log"
mv "$tmp/kubeconform" "$bin"
rm -f "$LOCAL/bin"/.kubeconform-*
touch "$stamp"
say "kubeconform $KUBECONFORM_VERSION in $bin"
