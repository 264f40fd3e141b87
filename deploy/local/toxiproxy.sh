#!/usr/bin/env bash
# toxiproxy-server (Shopify's TCP proxy with faults to switch on: latency, resets), which `make chaos` puts
# between the services and its private Kafka broker for its network faults (tests/chaos/network.py). Built from
# the Go module proxy into .local/bin/toxiproxy-server (Go from PATH, /usr/local/go, or Debian's golang-go).
# Only the chaos run needs it (it runs this when the binary is missing): `make up` does not. Safe to re-run.
source "$(dirname "$0")/lib.sh"

go_tool toxiproxy-server "${TOXIPROXY_VERSION:-v2.5.0}" github.com/Shopify/toxiproxy/v2/cmd/server server
