#!/bin/sh
# Seed-compatible wrapper: GPU checks and environment validation = `phoenix doctor` (GPU facts, torch/GPU check, flags, storage).
set -eu
. "$(dirname "$0")/_phoenix.sh"
exec_phoenix doctor "$@"
