# Shared by the seed-compatible wrappers: find the phoenix command and exec it.
# PHOENIX_BIN overrides (e.g. "python3 -m provisioner" in a source checkout).
exec_phoenix() {
  if [ -n "${PHOENIX_BIN:-}" ]; then
    # shellcheck disable=SC2086  # PHOENIX_BIN may hold a command and its arguments
    exec $PHOENIX_BIN "$@"
  elif command -v phoenix >/dev/null 2>&1; then
    exec phoenix "$@"
  else
    exec python3 -m provisioner "$@"
  fi
}
