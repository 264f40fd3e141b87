#!/usr/bin/env bash
# toxiproxy-server (Shopify's TCP proxy with faults to switch on: latency, resets), which `make chaos` puts
# between the services and its private Kafka broker for its network faults (tests/chaos/network.py). Built from
# the Go module proxy into .local/bin/toxiproxy-server (Go from PATH, /usr/local/go, or Debian's golang-go).
# Only the chaos run needs it (it runs this when the binary is missing): `make up` does not. Safe to re-run.
source "$(dirname "$0")/lib.sh"

TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-v2.5.0}"
bin="$LOCAL/bin/toxiproxy-server"
stamp="$LOCAL/bin/.toxiproxy-server-$TOXIPROXY_VERSION"
[[ -x "$bin" && -f "$stamp" ]] && exit 0

go="$(command -v go || true)"
[[ -n "$go" || ! -x /usr/local/go/bin/go ]] || go=/usr/local/go/bin/go
if [[ -z "$go" ]]; then
  [[ $EUID -eq 0 ]] || die "toxiproxy needs Go to build: run as root once (installs golang-go), or install Go"
  say "installing golang-go from Debian's packages (to build toxiproxy)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >/dev/null
  go="$(command -v go)"
fi

say "building toxiproxy-server $TOXIPROXY_VERSION from the Go module proxy"
mkdir -p "$LOCAL/bin"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# No HOME (so no default caches): keep Go's module and build caches under .local/go (writable: rm -rf works).
if [[ -z "${HOME:-}" ]]; then export GOPATH="$LOCAL/go" GOCACHE="$LOCAL/go/cache"; fi
GOBIN="$tmp" GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" \
  "$go" install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >"$LOGS/toxiproxy-build.log" 2>&1 \
  || die "go install of toxiproxy $TOXIPROXY_VERSION failed; see $LOGS/toxiproxy-build.log"
mv "$tmp/server" "$bin"
rm -f "$LOCAL/bin"/.toxiproxy-server-*
touch "$stamp"
say "toxiproxy-server $TOXIPROXY_VERSION in $bin"
