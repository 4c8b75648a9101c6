#!/bin/sh
# Run the Hugging Face tests on the huggingface_hub the image pins (HUGGINGFACE_HUB_VERSION in
# config/versions.conf), in a throwaway venv outside the repo. olah, the loopback Hub the tests
# start, needs a newer hub, so it keeps running on this Python (PHOENIX_OLAH_PYTHON).
#   scripts/dev/hub-compat.sh            the default test files
#   scripts/dev/hub-compat.sh -k gated   the same, with extra pytest arguments
#   PYTHON=python3.11 PHOENIX_HUB_COMPAT_VENV=/tmp/v scripts/dev/hub-compat.sh
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-python3}
pin=$(sed -n 's/^HUGGINGFACE_HUB_VERSION=//p' "$repo/config/versions.conf")
[ -n "$pin" ] || { echo "no HUGGINGFACE_HUB_VERSION in config/versions.conf" >&2; exit 2; }
venv=${PHOENIX_HUB_COMPAT_VENV:-${TMPDIR:-/tmp}/phoenix-hub-$pin}
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q -e "$repo" "huggingface_hub==$pin" pytest pytest-timeout hypothesis
"$py" -c 'import olah' || { echo "$py has no olah: pip install -e '.[test]'" >&2; exit 2; }
got=$("$venv/bin/python" -c 'import huggingface_hub as h; print(h.__version__)')
PHOENIX_OLAH_PYTHON=$("$py" -c 'import sys; print(sys.executable)')
export PHOENIX_OLAH_PYTHON
echo "huggingface_hub $got in $venv; olah on $PHOENIX_OLAH_PYTHON"
cd "$repo"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  tests/sources/test_huggingface.py tests/sources/test_hub_compat.py \
  tests/sources/test_organizer.py tests/actions/test_model_apply.py \
  tests/actions/test_model_resolve.py \
  tests/actions/test_lock_and_locked_apply.py tests/commands/test_apply_cmd.py \
  tests/test_apply.py "$@"
