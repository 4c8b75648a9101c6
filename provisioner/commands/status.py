"""``phoenix status``: the health API's ``/status``, for a person."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from provisioner.errors import PhoenixError

HELP = "show the running pod's status (phase, services, flags, versions) from the health API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phoenix status``."""
    port = os.environ.get("PHOENIX_HEALTH_PORT", "8189")
    parser.add_argument(
        "--url", default=f"http://127.0.0.1:{port}/status", help="status URL (default: %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def fetch_status(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET the status document."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except (OSError, ValueError) as exc:
        raise PhoenixError(
            f"cannot read the status: {exc}",
            where=url,
            hint="is `phoenix run` running? Its health API listens on services.health.port",
        ) from exc


def render_status(doc: dict[str, Any]) -> str:
    """The status as aligned text."""
    lines = [f"phase:     {doc.get('phase')}   (up {doc.get('uptime_s')} s)"]
    lines.append(f"plan hash: {doc.get('plan_hash')}")
    progress = doc.get("apply", {}).get("progress") or {}
    if progress:
        lines.append(
            f"apply:     {progress.get('ok', 0)} ok, {progress.get('failed', 0)} failed "
            f"of {progress.get('done', 0)}"
        )
    for row in doc.get("apply", {}).get("results", []):
        if not row.get("ok"):
            req = " (required)" if row.get("required") else ""
            lines.append(f"  FAILED {row['id']}{req}: {row.get('message', '')}")
    lines.append("services:")
    for svc in doc.get("services", []):
        ready = "ready" if svc.get("ready") else ""
        lines.append(
            f"  {svc['name']:12} {svc['state']:8} {ready:5} pid={svc.get('pid')} "
            f"restarts={svc.get('restarts')}/{svc.get('max_restarts')}"
        )
    flags = doc.get("flags", {})
    lines.append("flags:     " + " ".join(flags.get("args", [])))
    for reason in flags.get("reasons", []):
        lines.append(f"  {reason['flag'] or '(none)'}: {reason['reason']}")
    lines.append("versions:")
    for key, value in sorted((doc.get("versions") or {}).items()):
        lines.append(f"  {key:16} {value}")
    storage = doc.get("storage") or {}
    if storage:
        lines.append(
            f"storage:   {storage.get('mode')} at {storage.get('root')}, "
            f"{storage.get('free_gb')} GB free"
        )
    for warning in doc.get("warnings", []):
        lines.append(f"warning: {warning}")
    for error in doc.get("errors", []):
        lines.append(f"error: {error}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the status; 1 when it cannot be read."""
    doc = fetch_status(args.url)
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else render_status(doc))
    return 0
