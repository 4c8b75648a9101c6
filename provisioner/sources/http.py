"""The one HTTP session factory: retry policy, User-Agent, and tokens scoped to their own host.

Every network call Phoenix makes with requests goes through a session from :func:`make_session`.
Tokens are attached per host by :class:`HostScopedBearer`, which sends ``Authorization`` only
when the request's ``host:port`` is the token's own host. A redirect to another host (a CDN)
never carries it, and no token is ever put in a URL query.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from provisioner import __version__
from provisioner.core.redact import register_secret

USER_AGENT = f"phoenix-provisioner/{__version__} (+https://github.com/phoenix-provisioner)"

#: Status codes worth another attempt: rate limiting and transient server failures.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure.

    ``attempts`` counts every try (the first included). The n-th retry waits
    ``min(backoff_max, backoff_base * 2**(n-1))`` seconds with up to 25 % jitter, or the server's
    ``Retry-After`` capped at ``retry_after_max``.
    """

    attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    timeout_connect: float = 15.0
    timeout_read: float = 60.0

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeouts for requests."""
        return (self.timeout_connect, self.timeout_read)

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based), jitter included."""
        base = min(self.backoff_max, self.backoff_base * 2 ** max(0, retry_number - 1))
        return float(base * (1.0 + random.uniform(0.0, 0.25)))  # jitter, not crypto

    def wait_for(self, retry_number: int, retry_after: str | None) -> float:
        """The wait before a retry: ``Retry-After`` (capped) when given, else the backoff."""
        honoured = parse_retry_after(retry_after)
        if honoured is not None:
            return min(self.retry_after_max, honoured)
        return self.backoff(retry_number)


DEFAULT_RETRY = RetryPolicy()


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def host_key(url: str) -> str:
    """``host:port`` of ``url``, lower-case, with the scheme's default port filled in."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    return f"{host}:{port}"


class HostScopedBearer(requests.auth.AuthBase):
    """``Authorization: Bearer`` only for requests whose ``host:port`` owns the token.

    Holds one token per host; :meth:`add` scopes another. For any other host the header is
    removed, so a token cannot follow a redirect to a CDN or leak to an unrelated URL.
    """

    def __init__(self, token: str, host_url: str) -> None:
        self._tokens: dict[str, str] = {}
        self.add(token, host_url)

    def add(self, token: str, host_url: str) -> None:
        """Scope ``token`` to the host of ``host_url`` (a base URL such as the API base)."""
        register_secret(token)
        self._tokens[host_key(host_url)] = token

    def hosts(self) -> frozenset[str]:
        """The ``host:port`` keys that receive a token."""
        return frozenset(self._tokens)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._tokens.get(host_key(request.url or ""))
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        else:
            request.headers.pop("Authorization", None)
        return request

    def __repr__(self) -> str:  # never the token
        return f"HostScopedBearer(hosts={sorted(self._tokens)})"


class NoAuth(requests.auth.AuthBase):
    """Send no credentials at all, overriding any session auth (plain URL sources)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


def make_session(
    *, pool_size: int = 16, headers: Mapping[str, str] | None = None
) -> requests.Session:
    """A requests session for Phoenix: User-Agent, a connection pool for parallel downloads.

    Retries are not done by urllib3 but by the callers with :class:`RetryPolicy`
    (:func:`get_with_retries`, the download engine), so that a retry can resume a transfer
    and ``Retry-After`` is honoured with a cap.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    if headers:
        session.headers.update(headers)
    return session


def attach_bearer(session: requests.Session, token: str | None, base_url: str) -> None:
    """Scope ``token`` to ``base_url``'s host on ``session`` (no-op without a token).

    Composes with a :class:`HostScopedBearer` already on the session; refuses to replace a
    different kind of session auth.
    """
    if not token:
        return
    current = session.auth
    if isinstance(current, HostScopedBearer):
        current.add(token, base_url)
    elif current is None:
        session.auth = HostScopedBearer(token, base_url)
    else:
        raise TypeError(f"session already has a different auth: {type(current).__name__}")


def get_with_retries(
    session: requests.Session,
    url: str,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> requests.Response:
    """GET ``url``, retrying connection errors, timeouts, 5xx and 429 per ``retry``.

    Returns the last response (its status may still be an error: the caller maps it);
    re-raises the last connection error when every attempt failed to connect.
    """
    kwargs.setdefault("timeout", retry.timeout)
    for attempt in range(1, retry.attempts + 1):
        last = attempt == retry.attempts
        try:
            response = session.get(url, **kwargs)
        except (requests.ConnectionError, requests.Timeout):
            if last:
                raise
            sleep(retry.backoff(attempt))
            continue
        if response.status_code in RETRY_STATUSES and not last:
            wait = retry.wait_for(attempt, response.headers.get("Retry-After"))
            response.close()
            sleep(wait)
            continue
        return response
    raise AssertionError("unreachable: the last attempt returns or raises")
