#!/bin/sh
# Seed-compatible wrapper: starts and inspects the core services.
#   service_manager.sh start [opts]  = `phoenix run --skip-apply` (launch what is on disk)
#   service_manager.sh status [opts] = `phoenix status` (from the health API)
#   service_manager.sh stop [opts]   = `phoenix stop` (SIGTERM to this root's `phoenix run`)
set -eu
. "$(dirname "$0")/_phoenix.sh"
action="${1:-start}"
[ "$#" -gt 0 ] && shift
case "$action" in
  start) exec_phoenix run --skip-apply "$@" ;;
  status) exec_phoenix status "$@" ;;
  stop) exec_phoenix stop "$@" ;;
  *) echo "usage: service_manager.sh start|status|stop [phoenix options]" >&2; exit 2 ;;
esac
