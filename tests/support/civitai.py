"""A Civitai-like API and file server on loopback that the tests (and benchmarks) own.

Real HTTP/1.1 with keep-alive, real bytes, and the faults a download engine must survive:

* ``/api/v1/models/<id>`` and ``/api/v1/model-versions/<id>`` answer JSON shaped like Civitai's
  (``modelVersions[].files[]`` with ``hashes.SHA256`` in upper-case hex, ``primary``,
  ``metadata.format/fp/size``, ``downloadUrl``); optional token check (401 without it).
* ``/api/download/models/<version>`` answers ``307`` to a second server (another loopback
  address) that serves the bytes, like Civitai's CDN.
* ``/files/<name>`` serves bytes (in memory, or a file on disk via ``sendfile``) with ETag,
  ``Range``/``If-Range`` support that can be switched off, a per-connection rate limit, and a
  queue of one-shot faults: a status (500, 429 + ``Retry-After``), or a dropped connection
  after a fraction of the body.
* Every request is recorded: path, headers, status, body bytes sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.safetensors import LORA_KEYS, safetensors_bytes
from tests.support.servers import QuietServer


@dataclass(frozen=True)
class Status:
    """One-shot fault: answer ``code`` with ``headers`` instead of the file."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drop:
    """One-shot fault: send ``fraction`` of the body, then close the connection.

    With ``start``, only a request whose range starts at that offset takes it (one segment).
    """

    fraction: float
    start: int | None = None


@dataclass
class Served:
    """A file the server offers under ``/files/<name>``."""

    data: bytes | None = None
    path: Path | None = None
    etag: str | None = None
    ranges: bool = True
    rate: int | None = None  # bytes per second per connection
    faults: list[Status | Drop] = field(default_factory=list)
    content_disposition: str | None = None
    chunked: bool = False  # no Content-Length: the client cannot know the size up front

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return self.path.stat().st_size


@dataclass(frozen=True)
class Record:
    """One request as the server saw it."""

    server: str
    method: str
    path: str
    headers: dict[str, str]
    status: int
    body_bytes: int


class _Server(QuietServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, host: str, hub: LoopbackHub, name: str) -> None:
        super().__init__((host, 0), _Handler)
        self.hub = hub
        self.name = name

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class LoopbackHub:
    """The API server and its CDN: state, routes, and the request log."""

    def __init__(self, api_host: str = "127.0.0.1", cdn_host: str = "127.0.0.2") -> None:
        self.lock = threading.Lock()
        self.files: dict[str, Served] = {}
        self.api: dict[str, tuple[int, Any]] = {}
        self.redirects: dict[int, str] = {}  # version id -> file name on the CDN
        self.api_faults: dict[str, list[Status]] = {}  # one-shot statuses per API path
        self.required_token: str | None = None
        self.records: list[Record] = []
        self.in_flight = 0
        self.peak_in_flight = 0  # most requests answered at once since the last reset
        self.idle = threading.Condition(self.lock)
        self.api_server = _Server(api_host, self, "api")
        try:
            self.cdn_server = _Server(cdn_host, self, "cdn")
        except OSError:  # a system without 127.0.0.2: another port still is another host:port
            self.cdn_server = _Server(api_host, self, "cdn")
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in (self.api_server, self.cdn_server)
        ]
        for thread in self._threads:
            thread.start()

    # -- configuration -------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return self.api_server.base

    @property
    def cdn_base(self) -> str:
        return self.cdn_server.base

    def serve(self, name: str, served: Served) -> str:
        """Offer ``served`` as ``/files/<name>`` on both servers; returns the CDN URL."""
        if served.etag is None:
            digest = hashlib.sha256(served.data).hexdigest()[:16] if served.data else name
            served.etag = f'"{digest}"'
        with self.lock:
            self.files[name] = served
        return f"{self.cdn_base}/files/{name}"

    def add_model(
        self,
        model_id: int,
        *,
        name: str,
        type: str,
        versions: list[dict[str, Any]],
    ) -> None:
        """Register a model; each version dict is completed into Civitai's shape.

        A version gives ``id`` and ``files`` (each: ``name``, ``data`` or ``sha256`` + ``size``,
        optional ``primary``, ``metadata``, ``type``); ``status``/``availability`` optional.
        The bytes are served through the 307 download route.
        """
        full_versions = []
        for version in versions:
            vid = version["id"]
            files = []
            for i, spec in enumerate(version["files"]):
                data = spec.get("data")
                sha = spec.get("sha256") or hashlib.sha256(data).hexdigest()
                size = spec.get("size", len(data) if data is not None else 0)
                file_name = spec["name"]
                served_as = f"v{vid}-{i}-{hashlib.sha256(file_name.encode()).hexdigest()[:8]}"
                if data is not None:
                    self.serve(served_as, Served(data=spec.get("served", data)))
                self.redirects[vid * 100 + i] = served_as
                files.append(
                    {
                        "id": vid * 10 + i,
                        "name": file_name,
                        "type": spec.get("type", "Model"),
                        "sizeKB": size / 1024,
                        "metadata": spec.get(
                            "metadata", {"format": "SafeTensor", "size": "full", "fp": "fp16"}
                        ),
                        "pickleScanResult": "Success",
                        "virusScanResult": "Success",
                        "hashes": {"SHA256": sha.upper(), "AutoV2": sha[:10].upper()},
                        "downloadUrl": f"{self.api_base}/api/download/models/{vid}"
                        + (f"?fileIndex={i}" if i else ""),
                        "primary": spec.get("primary", i == 0),
                    }
                )
            body = {
                "id": vid,
                "modelId": model_id,
                "name": version.get("name", f"v{vid}"),
                "baseModel": "Flux.1 D",
                "air": f"urn:air:flux1:{type.lower()}:civitai:{model_id}@{vid}",
                "status": version.get("status", "Published"),
                "availability": version.get("availability", "Public"),
                "earlyAccessEndsAt": version.get("earlyAccessEndsAt"),
                "publishedAt": "2026-01-01T00:00:00.000Z",
                "model": {"name": name, "type": type, "nsfw": False, "poi": False},
                "files": files,
                "images": [],
                "downloadUrl": f"{self.api_base}/api/download/models/{vid}",
            }
            full_versions.append(body)
            if body["status"] == "Published":
                self.api[f"/api/v1/model-versions/{vid}"] = (200, body)
        model = {
            "id": model_id,
            "name": name,
            "type": type,
            "nsfw": False,
            "modelVersions": [
                {k: v for k, v in body.items() if k not in ("modelId", "model")}
                for body in full_versions
            ],
        }
        self.api[f"/api/v1/models/{model_id}"] = (200, model)

    # -- inspection ----------------------------------------------------------------------
    def record(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)

    def requests_to(self, prefix: str, server: str | None = None) -> list[Record]:
        """Recorded requests whose path starts with ``prefix`` (optionally on one server).

        Waits (briefly) for requests still being answered, so a client that already read the
        last byte sees the server's record of it.
        """
        with self.lock:
            self.idle.wait_for(lambda: self.in_flight == 0, timeout=5.0)
            return [
                r
                for r in self.records
                if r.path.startswith(prefix) and (server is None or r.server == server)
            ]

    def bytes_sent(self, prefix: str = "/files/") -> int:
        """Body bytes sent for paths under ``prefix``."""
        return sum(r.body_bytes for r in self.requests_to(prefix))

    def reset(self) -> None:
        with self.lock:
            self.idle.wait_for(lambda: self.in_flight == 0, timeout=5.0)
            self.records.clear()
            self.peak_in_flight = self.in_flight

    def close(self) -> None:
        for server in (self.api_server, self.cdn_server):
            server.shutdown()
            server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # The request line's path, without the query string.
    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    def _finish(self, status: int, body_bytes: int) -> None:
        self.server.hub.record(
            Record(
                self.server.name,
                self.command,
                self.path,
                dict(self.headers.items()),
                status,
                body_bytes,
            )
        )

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)
        self._finish(status, len(raw))

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        hub = self.server.hub
        with hub.lock:
            hub.in_flight += 1
            hub.peak_in_flight = max(hub.peak_in_flight, hub.in_flight)
        try:
            self._answer(head)
        finally:
            with hub.lock:
                hub.in_flight -= 1
                hub.idle.notify_all()

    def _answer(self, head: bool) -> None:
        hub = self.server.hub
        route = self.route
        if route.startswith("/api/"):
            token_ok = self.headers.get("Authorization") == f"Bearer {hub.required_token}"
            if hub.required_token and self.server.name == "api" and not token_ok:
                self._json(401, {"error": "Unauthorized"})
                return
            match = re.fullmatch(r"/api/download/models/(\d+)", route)
            if match and self.server.name == "api":
                index = re.search(r"fileIndex=(\d+)", self.path)
                key = int(match.group(1)) * 100 + (int(index.group(1)) if index else 0)
                target = hub.redirects.get(key)
                if target is None:
                    self._json(404, {"error": "Not found"})
                    return
                self.send_response(307)
                self.send_header("Location", f"{hub.cdn_base}/files/{target}?sig=abc")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._finish(307, 0)
                return
            with hub.lock:
                faults = hub.api_faults.get(route)
                fault = faults.pop(0) if faults else None
            if fault is not None:
                self._json(fault.code, {"error": f"injected {fault.code}"}, fault.headers)
                return
            status, body = hub.api.get(route, (404, {"error": "Model not found"}))
            self._json(status, body)
            return
        if route.startswith("/files/"):
            self._file(route[len("/files/") :], head)
            return
        self._json(404, {"error": "no route"})

    def _file(self, name: str, head: bool) -> None:
        hub = self.server.hub
        wanted = self.headers.get("Range")
        asked = re.fullmatch(r"bytes=(\d+)-(\d*)", (wanted or "").strip())
        asked_start = int(asked.group(1)) if asked else 0
        with hub.lock:
            served = hub.files.get(name)
            fault = None
            for i, candidate in enumerate(served.faults if served else []):
                if not isinstance(candidate, Drop) or candidate.start in (None, asked_start):
                    assert served is not None
                    fault = served.faults.pop(i)
                    break
        if served is None:
            self._json(404, {"error": "no such file"})
            return
        if isinstance(fault, Status):
            self._json(fault.code, {"error": f"injected {fault.code}"}, fault.headers)
            return
        size = served.size
        start, end, status = 0, size - 1, 200
        if_range = self.headers.get("If-Range")
        if wanted and served.ranges and (if_range is None or if_range == served.etag):
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if match:
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self._finish(416, 0)
                    return
                status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if served.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if served.etag:
            self.send_header("ETag", served.etag)
        if served.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if served.content_disposition:
            self.send_header("Content-Disposition", served.content_disposition)
        self.end_headers()
        if head:
            self._finish(status, 0)
            return
        limit = length
        if isinstance(fault, Drop):
            limit = int(length * fault.fraction)
        sent = self._send_body(served, start, limit)
        self._finish(status, sent)
        if sent < length:
            self.close_connection = True
            self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _send_body(self, served: Served, start: int, count: int) -> int:
        """Send ``count`` bytes from ``start``, paced to ``served.rate``; returns bytes sent."""
        self.wfile.flush()
        sent = 0
        step = 4 * 1024 * 1024
        if served.rate:
            step = max(1024, served.rate // 20)
        began = time.monotonic()
        try:
            if served.path is not None:
                with open(served.path, "rb") as fh:
                    while sent < count:
                        n = os.sendfile(
                            self.connection.fileno(),
                            fh.fileno(),
                            start + sent,
                            min(step, count - sent),
                        )
                        if n == 0:
                            break
                        sent += n
                        self._pace(served.rate, sent, began)
            else:
                assert served.data is not None
                view = memoryview(served.data)
                while sent < count:
                    chunk = view[start + sent : start + min(count, sent + step)]
                    if served.chunked:
                        self.connection.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    else:
                        self.connection.sendall(chunk)
                    sent += len(chunk)
                    self._pace(served.rate, sent, began)
                if served.chunked and sent == count:
                    self.connection.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the client went away
        return sent

    @staticmethod
    def _pace(rate: int | None, sent: int, began: float) -> None:
        if rate:
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)


def running_hub() -> Iterator[LoopbackHub]:
    """Start a hub, yield it, shut it down (for fixtures and benchmarks)."""
    hub = LoopbackHub()
    try:
        yield hub
    finally:
        hub.close()


def add_style_lora(hub: LoopbackHub, model_id: int = 618692, version_id: int = 691639) -> None:
    """The LoRA the bake, apply and run tests share: one version, ``style.safetensors``."""
    hub.add_model(
        model_id, name="Style", type="LORA",
        versions=[{"id": version_id, "files": [{"name": "style.safetensors",
                                                "data": safetensors_bytes(LORA_KEYS)}]}],
    )  # fmt: skip
