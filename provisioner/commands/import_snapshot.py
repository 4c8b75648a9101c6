"""``phoenix import-snapshot FILE``: a ComfyUI-Manager snapshot → manifest entries.

The ``comfyui`` commit becomes ``comfyui.ref`` (so ``apply`` checks it out, which the Manager
never does), git nodes become ``nodes:`` pinned to their hash, ``pips`` become ``packages:``.
Whatever cannot be imported (registry nodes offline, disabled nodes, local wheels, the image's
torch stack) is reported on stderr and as comments in the output; nothing is dropped silently.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from provisioner.core.errors import ManifestError, PhoenixError
from provisioner.core.fsio import read_capped, write_output
from provisioner.software.snapshot import (
    PIP_MODES,
    import_snapshot,
    parse_snapshot,
    render_manifest,
)

HELP = "turn a ComfyUI-Manager snapshot (JSON or YAML) into manifest entries"
#: a Manager snapshot of a large install (hundreds of nodes and pips) is ~50 KB; a bigger file
#: is something else, and would take seconds per MB to import
MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024
_HINT = "pass the .json or .yaml file ComfyUI-Manager saved"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """FILE, ``--output``, ``--pips``."""
    parser.add_argument("file", metavar="FILE", help="snapshot file (.json or .yaml)")
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="write the manifest YAML here (default: stdout)"
    )
    parser.add_argument(
        "--pips",
        choices=PIP_MODES,
        default="pinned",
        help="which pip entries to import: none, pinned (name==version; default), "
        "all (also name @ URL)",
    )


def read_snapshot_text(path: Path) -> str:
    """The snapshot file's text; a pipe, a directory, a huge or non-UTF-8 file is refused."""
    try:
        raw = read_capped(path, MAX_SNAPSHOT_BYTES)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # a pipe would block or never end
            kind = "a directory" if path.is_dir() else "a pipe or device"
            why, hint = f"{kind}, not a regular file", _HINT
        elif exc.errno == errno.EFBIG:
            why = (
                f"file is {path.stat().st_size} bytes; a snapshot is at most "
                f"{MAX_SNAPSHOT_BYTES} bytes"
            )
            hint = _HINT
        else:
            why, hint = exc.strerror or str(exc), None
        raise ManifestError(f"cannot read snapshot: {why}", where=str(path), hint=hint) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"cannot read snapshot: not UTF-8 text (byte {exc.start})", where=str(path), hint=_HINT
        ) from exc


def check_loads(rendered: str, label: str, source: str) -> None:
    """Load ``rendered`` as ``phoenix validate`` would (file loader, schema, merge) and raise a
    :class:`ManifestError` naming ``source`` if it would be rejected: import must never write
    a manifest that Phoenix refuses. ``label`` names the output in the error's locations."""
    from provisioner.manifest.load import MAX_MANIFEST_BYTES

    size = len(rendered.encode("utf-8"))
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"the imported manifest would be {size} bytes, over the {MAX_MANIFEST_BYTES} bytes a "
            "manifest may have, so none was written",
            where=source,
            hint="import with --pips none, or remove entries from the snapshot",
        )
    try:
        _load_and_merge(rendered, label)
    except PhoenixError as exc:
        raise ManifestError(
            "the manifest imported from this snapshot would be rejected, so none was "
            f"written:\n{exc.render()}",
            where=source,
            hint="remove or fix that entry in the snapshot and import it again",
        ) from exc


def _load_and_merge(text: str, label: str) -> None:
    """What ``phoenix validate`` does with a manifest, without the environment."""
    from provisioner.manifest.load import load_manifest_text
    from provisioner.manifest.merge import merge
    from provisioner.manifest.validate import validate_doc

    doc = load_manifest_text(text, label)
    merge(doc, validate_doc(doc), {})


def run(args: argparse.Namespace) -> int:
    """Import, check that the result loads as a manifest, print or write it; reports go to
    stderr."""
    path = Path(args.file)
    text = read_snapshot_text(path)
    imported = import_snapshot(parse_snapshot(text, str(path)), pips=args.pips)
    rendered = render_manifest(imported, path.name)
    for line in imported.reports:
        print(f"phoenix: not imported: {line}", file=sys.stderr)
    check_loads(rendered, args.output or "<stdout>", str(path))
    if args.output:
        write_output(Path(args.output), rendered, "the manifest")
    else:
        sys.stdout.write(rendered)
    comfy = f"@ {imported.comfyui_ref[:12]}" if imported.comfyui_ref else "(none)"
    print(
        f"phoenix: imported comfyui {comfy}, {len(imported.nodes)} node(s), "
        f"{len(imported.packages)} package(s); {len(imported.reports)} item(s) not imported",
        file=sys.stderr,
    )
    return 0
