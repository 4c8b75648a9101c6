#!/bin/sh
# Seed-compatible wrapper: moving downloaded files into ComfyUI's folders = `phoenix apply` (placement is part of apply; `phoenix plan` shows where each file goes).
set -eu
. "$(dirname "$0")/_phoenix.sh"
exec_phoenix apply "$@"
