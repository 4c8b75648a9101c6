"""``phoenix status``: the health API's ``/status``, for a person."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from provisioner.core.errors import EnvError, PhoenixError

HELP = "show the running pod's status (phase, services, flags, versions) from the health API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``phoenix status``."""
    parser.add_argument(
        "--url",
        default=_default_url(os.environ.get("PHOENIX_HEALTH_PORT") or "8189"),
        help="status URL (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def _default_url(port: str) -> str:
    return f"http://127.0.0.1:{port}/status"


def fetch_status(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET the status document."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = json.loads(response.read())
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, found {type(data).__name__}")
        return data
    except (OSError, ValueError, RecursionError) as exc:
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
    from provisioner.commands.argtypes import port

    raw = os.environ.get("PHOENIX_HEALTH_PORT")
    if raw and args.url == _default_url(raw):
        try:
            port(raw)
        except argparse.ArgumentTypeError as exc:
            raise EnvError(
                str(exc), where="env:PHOENIX_HEALTH_PORT", hint="set it to the health API's port"
            ) from exc
    doc = fetch_status(args.url)
    try:
        text = json.dumps(doc, indent=2, sort_keys=True) if args.json else render_status(doc)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PhoenixError(
            f"unexpected status document ({type(exc).__name__}: {exc})",
            where=args.url,
            hint="is that Phoenix's health API? `phoenix status --json` prints it as it came",
        ) from exc
    print(text)
    return 0
