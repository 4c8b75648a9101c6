"""The health API: ``/healthz`` (alive), ``/readyz`` (ComfyUI answers), ``/status`` (JSON).

A stdlib HTTP server on its own port (default 8189) in a daemon thread of ``phoenix run``, so
it answers from the first second, during apply too. ``/status`` never holds a secret: every
value passes through :func:`~provisioner.core.redact.redact` before it is sent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from provisioner.core.redact import redact
from provisioner.plan.change import ItemResult
from provisioner.runtime.services import probe_http

log = logging.getLogger("phoenix.health")


class StatusBoard:
    """Thread-safe facts about this run, rendered by ``/status``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.phase = "starting"
        self.apply_results: list[dict[str, Any]] = []
        self.apply_progress: dict[str, Any] = {}
        self.flags: list[str] = []
        self.flag_reasons: list[dict[str, str]] = []
        self.versions: dict[str, Any] = {}
        self.plan_hash: str | None = None
        self.storage: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.services: Callable[[], list[dict[str, Any]]] = list
        #: the service whose readiness turns "starting" into "ready" (and back), read from the
        #: same snapshot ``/status`` shows, so the phase never disagrees with the services
        self.gate: str | None = None
        #: seconds since ``phoenix run`` began: manifest loaded, apply done, ComfyUI spawned, ready
        self.timings: dict[str, float] = {}

    def set(self, **values: Any) -> None:
        """Update fields atomically."""
        with self._lock:
            for key, value in values.items():
                if not hasattr(self, key):
                    raise AttributeError(key)
                setattr(self, key, value)

    def record_results(self, results: list[ItemResult], remaining: int = 0) -> None:
        """Keep each applied item's outcome, and how many changes are still pending after it."""
        rows = [
            {"id": r.id, "kind": r.kind, "ok": r.ok, "required": r.required, "message": r.message}
            for r in results
        ]
        with self._lock:
            self.apply_results = rows
            ok = sum(1 for r in results if r.ok)
            self.apply_progress = {
                "done": len(results),
                "ok": ok,
                "failed": len(results) - ok,
                "remaining": remaining,
            }

    def mark(self, name: str, since: float) -> None:
        """Record that ``name`` happened ``time.monotonic() - since`` seconds into the run."""
        with self._lock:
            self.timings[name] = round(time.monotonic() - since, 3)

    def update_versions(self, **versions: Any) -> None:
        """Add or replace entries of ``versions``."""
        with self._lock:
            self.versions = {**self.versions, **versions}

    def error(self, message: str) -> None:
        """Add an error shown by ``/status``."""
        with self._lock:
            self.errors.append(message)

    def warn(self, message: str) -> None:
        """Add a warning shown by ``/status``."""
        with self._lock:
            self.warnings.append(message)

    def _phase(self, services: list[dict[str, Any]]) -> str:
        if self.phase not in ("starting", "ready") or self.gate is None:
            return self.phase
        for svc in services:
            if svc["name"] == self.gate:
                return "ready" if svc["ready"] and svc["state"] == "running" else "starting"
        return self.phase

    def current_phase(self) -> str:
        """The phase now: while services run, "ready" exactly when the gate service is."""
        services = self.services()
        with self._lock:
            return self._phase(services)

    def to_json(self) -> dict[str, Any]:
        """The ``/status`` document."""
        services = self.services()
        with self._lock:
            doc = {
                "phase": self._phase(services),
                "uptime_s": round(time.time() - self.started, 1),
                "apply": {"progress": self.apply_progress, "results": self.apply_results},
                "services": services,
                "flags": {"args": self.flags, "reasons": self.flag_reasons},
                "versions": self.versions,
                "plan_hash": self.plan_hash,
                "storage": self.storage,
                "warnings": self.warnings,
                "errors": self.errors,
                "timings_s": dict(self.timings),
            }
        return doc


def _handler(board: StatusBoard, ready_url: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "phoenix-health"

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            body = redact(json.dumps(payload, indent=2, sort_keys=True)).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, {"ok": True, "phase": board.current_phase()})
            elif path == "/readyz":
                ready = bool(ready_url) and probe_http(ready_url or "", timeout=1.0)
                self._send(200 if ready else 503, {"ready": ready, "phase": board.current_phase()})
            elif path == "/status":
                self._send(200, board.to_json())
            else:
                self._send(404, {"error": "not found", "paths": ["/healthz", "/readyz", "/status"]})

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("health: " + format, *args)

    return Handler


class HealthServer:
    """The health API in a daemon thread."""

    def __init__(self, board: StatusBoard, host: str, port: int, ready_url: str | None) -> None:
        self.httpd = ThreadingHTTPServer((host, port), _handler(board, ready_url))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.1,), name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> HealthServer:
        """Serve in the background; returns self."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
