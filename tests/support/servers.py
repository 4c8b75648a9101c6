"""Loopback HTTP plumbing shared by the test servers: free ports and a quiet threading server."""

from __future__ import annotations

import socket
import sys
from http.server import ThreadingHTTPServer


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (nobody listens on it once this returns)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-body (a killed or cancelled download) is expected here."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]
