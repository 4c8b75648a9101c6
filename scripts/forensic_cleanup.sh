#!/bin/sh
# Seed-compatible wrapper: secure removal on exit = `phoenix cleanup` (PARANOID_MODE=true or --paranoid wipes user data).
set -eu
. "$(dirname "$0")/_phoenix.sh"
exec_phoenix cleanup "$@"
