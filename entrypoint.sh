#!/bin/sh
# Seed-compatible entry point: the image runs `tini -- phoenix run`; this wrapper does the same
# for operators who start the container with the seed's `entrypoint.sh`. `phoenix run` traps
# SIGINT/SIGTERM itself, stops every service, runs cleanup and exits with a meaningful code.
set -eu
. "$(dirname "$0")/scripts/_phoenix.sh"
exec_phoenix run "$@"
