#!/usr/bin/env bash
# kubeconform (yannh/kubeconform), which `make test` runs over the production manifests (deploy/production,
# tests/unit/test_production_manifests.py). Built from the Go module proxy into .local/bin/kubeconform (Go from
# PATH, /usr/local/go, or Debian's golang-go); about 5 s with a warm module cache, a few more without. Skipped
# while the binary of this version is there. Run by install.sh. Safe to re-run.
source "$(dirname "$0")/lib.sh"

go_tool kubeconform "${KUBECONFORM_VERSION:-v0.8.0}" github.com/yannh/kubeconform/cmd/kubeconform kubeconform 0
