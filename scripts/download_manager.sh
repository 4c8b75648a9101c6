#!/bin/sh
# Seed-compatible wrapper: model downloads with SHA256 verification = `phoenix apply` (downloads, verifies, places atomically).
set -eu
. "$(dirname "$0")/_phoenix.sh"
exec_phoenix apply "$@"
