"""The health API over real HTTP, redaction of /status, and `phoenix status` rendering it."""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from provisioner.commands import status as status_cmd
from provisioner.core.errors import PhoenixError
from provisioner.core.redact import forget_secrets, register_secret
from provisioner.plan.change import ItemResult
from provisioner.runtime.health import HealthServer, StatusBoard
from tests.support.pod import http_get
from tests.support.servers import free_port


class _Comfy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/system_stats" else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_endpoints_and_readiness() -> None:
    comfy_port = free_port()
    board = StatusBoard()
    board.set(phase="starting", flags=["--cpu"], versions={"phoenix": "0.1.0"})
    board.record_results(
        [ItemResult("hf:a/b/c", "models", True), ItemResult("civitai:1", "models", False, "404")]
    )
    server = HealthServer(board, "127.0.0.1", 0, f"http://127.0.0.1:{comfy_port}/system_stats")
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert http_get(base + "/healthz") == (200, {"ok": True, "phase": "starting"})
        assert http_get(base + "/readyz")[0] == 503
        comfy = ThreadingHTTPServer(("127.0.0.1", comfy_port), _Comfy)
        threading.Thread(target=comfy.serve_forever, daemon=True).start()
        try:
            assert http_get(base + "/readyz")[0] == 200
        finally:
            comfy.shutdown()
            comfy.server_close()
        code, doc = http_get(base + "/status")
        assert code == 200 and doc["flags"]["args"] == ["--cpu"]
        assert doc["apply"]["progress"] == {"done": 2, "ok": 1, "failed": 1, "remaining": 0}
        assert http_get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_phase_follows_the_gate_service_in_the_same_snapshot() -> None:
    # the supervisor flips readiness before the supervise loop sets the phase; /status must
    # not show a ready ComfyUI under phase "starting" (or the reverse) in between
    comfy = {"name": "comfyui", "state": "running", "ready": False}
    board = StatusBoard()
    board.set(services=lambda: [dict(comfy)], phase="starting", gate="comfyui")
    assert board.to_json()["phase"] == "starting" and board.current_phase() == "starting"
    comfy["ready"] = True
    doc = board.to_json()
    assert doc["phase"] == "ready" and doc["services"][0]["ready"]
    assert board.current_phase() == "ready"
    comfy.update(state="backoff", ready=False)  # crashed after ready: back to starting
    assert board.to_json()["phase"] == "starting"
    comfy.update(state="running", ready=True)
    board.set(phase="stopping")  # the lifecycle outside running services is the board's own
    assert board.to_json()["phase"] == "stopping" and board.current_phase() == "stopping"


def test_status_never_shows_a_secret() -> None:
    register_secret("hf_leakyTOKEN123")
    try:
        board = StatusBoard()
        board.warn("download failed for https://x/?token=hf_leakyTOKEN123")
        server = HealthServer(board, "127.0.0.1", 0, None).start()
        try:
            code, doc = http_get(f"http://127.0.0.1:{server.port}/status")
        finally:
            server.stop()
        assert code == 200 and "hf_leaky" not in json.dumps(doc) and "***" in doc["warnings"][0]
    finally:
        forget_secrets()


def test_board_rejects_unknown_fields() -> None:
    with pytest.raises(AttributeError):
        StatusBoard().set(nonsense=1)


def test_phoenix_status_renders_live_status(capsys: pytest.CaptureFixture[str]) -> None:
    board = StatusBoard()
    board.set(
        phase="ready",
        flags=["--listen", "0.0.0.0", "--cpu"],
        flag_reasons=[{"flag": "--cpu", "reason": "no NVIDIA GPU visible"}],
        versions={"comfyui_version": "0.3.64", "gpu": None},
        storage={"mode": "ephemeral", "root": "/workspace", "free_gb": 200.0},
        services=lambda: [
            {"name": "comfyui", "state": "running", "ready": True, "pid": 42, "restarts": 1,
             "max_restarts": 5}
        ],
    )  # fmt: skip
    board.record_results([ItemResult("civitai:9", "models", False, "sha mismatch", True)])
    server = HealthServer(board, "127.0.0.1", 0, None).start()
    try:
        parser = argparse.ArgumentParser()
        status_cmd.add_arguments(parser)
        args = parser.parse_args(["--url", f"http://127.0.0.1:{server.port}/status"])
        assert status_cmd.run(args) == 0
        text = capsys.readouterr().out
        assert "phase:     ready" in text and "comfyui      running  ready pid=42" in text
        assert "FAILED civitai:9 (required): sha mismatch" in text
        assert "--cpu: no NVIDIA GPU visible" in text and "comfyui_version  0.3.64" in text
        args = parser.parse_args(["--url", f"http://127.0.0.1:{server.port}/status", "--json"])
        status_cmd.run(args)
        assert json.loads(capsys.readouterr().out)["phase"] == "ready"
    finally:
        server.stop()


def test_phoenix_status_without_a_pod() -> None:
    with pytest.raises(PhoenixError) as err:
        status_cmd.fetch_status(f"http://127.0.0.1:{free_port()}/status", timeout=1)
    assert "is `phoenix run` running?" in (err.value.hint or "")


class _Foreign(BaseHTTPRequestHandler):
    """Something else on the port: answers JSON that is not a status document."""

    body = b"[1, 2]"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"services": [1], "apply": []}', b"[" * 50_000])
def test_phoenix_status_of_something_else_is_a_located_error(body: bytes) -> None:
    handler = type("Handler", (_Foreign,), {"body": body})
    foreign = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{foreign.server_address[1]}/status"
    try:
        parser = argparse.ArgumentParser()
        status_cmd.add_arguments(parser)
        with pytest.raises(PhoenixError) as err:
            status_cmd.run(parser.parse_args(["--url", url]))
        assert err.value.where == url
    finally:
        foreign.shutdown()
        foreign.server_close()


def test_phoenix_status_names_a_bad_port_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX_HEALTH_PORT", "abc")
    parser = argparse.ArgumentParser()
    status_cmd.add_arguments(parser)
    with pytest.raises(PhoenixError) as err:
        status_cmd.run(parser.parse_args([]))
    assert err.value.where == "env:PHOENIX_HEALTH_PORT" and "'abc'" in err.value.message
