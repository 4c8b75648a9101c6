"""The session factory, host-scoped tokens, and the retrying GET."""

from __future__ import annotations

import email.utils

import pytest
import requests

from provisioner.core.redact import redact
from provisioner.sources.http import (
    USER_AGENT,
    HostScopedBearer,
    NoAuth,
    RetryPolicy,
    attach_bearer,
    get_with_retries,
    host_key,
    make_session,
    parse_retry_after,
)
from tests.support.civitai import LoopbackHub, Served, Status


def prepared(url: str, auth: requests.auth.AuthBase) -> requests.PreparedRequest:
    return requests.Request("GET", url, auth=auth).prepare()


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://civitai.com/api/v1/models/1", "civitai.com:443"),
        ("https://CivitAI.com:443/x", "civitai.com:443"),
        ("http://127.0.0.1:8080/x?y=1", "127.0.0.1:8080"),
        ("http://h/x", "h:80"),
    ],
)
def test_host_key(url: str, key: str) -> None:
    assert host_key(url) == key


def test_bearer_only_for_its_own_host_and_port() -> None:
    auth = HostScopedBearer("tok-123456", "https://civitai.com")
    assert prepared("https://civitai.com/api/v1/models/1", auth).headers["Authorization"] == (
        "Bearer tok-123456"
    )
    for other in (
        "https://cdn.civitai.com/file",  # a CDN sub-domain
        "https://civitai.com:8443/x",  # another port
        "http://civitai.com/x",  # another scheme (port 80)
        "https://evil.example/civitai.com",
    ):
        assert "Authorization" not in prepared(other, auth).headers, other
    assert "tok-123456" not in repr(auth)
    assert redact("Bearer tok-123456") == "Bearer ***"


def test_bearer_strips_a_foreign_authorization_header() -> None:
    auth = HostScopedBearer("tok-123456", "https://civitai.com")
    request = requests.Request(
        "GET", "https://other/x", headers={"Authorization": "Bearer x"}, auth=auth
    ).prepare()
    assert "Authorization" not in request.headers


def test_attach_bearer_composes_hosts() -> None:
    session = make_session()
    attach_bearer(session, None, "https://civitai.com")
    assert session.auth is None
    attach_bearer(session, "tok-aaaa", "https://civitai.com")
    attach_bearer(session, "tok-bbbb", "http://127.0.0.1:9000")
    assert isinstance(session.auth, HostScopedBearer)
    assert session.auth.hosts() == {"civitai.com:443", "127.0.0.1:9000"}
    session.auth = ("user", "pass")
    with pytest.raises(TypeError, match="different auth"):
        attach_bearer(session, "tok-cccc", "https://civitai.com")


def test_no_auth_overrides_the_session(hub: LoopbackHub) -> None:
    url = hub.serve("f", Served(data=b"abc"))
    session = make_session()
    attach_bearer(session, "tok-dddd", hub.cdn_base)
    session.get(url, auth=NoAuth()).close()
    session.get(url).close()
    without, with_token = hub.requests_to("/files/")
    assert "Authorization" not in without.headers
    assert with_token.headers["Authorization"] == "Bearer tok-dddd"
    assert with_token.headers["User-Agent"] == USER_AGENT


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=lambda: 1_000_000.0) == pytest.approx(30.0)


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0, retry_after_max=10.0)
    assert 1.0 <= policy.backoff(1) <= 1.25
    assert 4.0 <= policy.backoff(3) <= 5.0
    assert 8.0 <= policy.backoff(10) <= 10.0
    assert policy.wait_for(1, "3600") == 10.0
    assert policy.wait_for(1, "2") == 2.0


def test_get_with_retries_500_then_200_and_429(hub: LoopbackHub) -> None:
    url = hub.serve(
        "j", Served(data=b"{}", faults=[Status(500), Status(429, {"Retry-After": "0"})])
    )
    waits: list[float] = []
    response = get_with_retries(
        make_session(), url, retry=RetryPolicy(backoff_base=0.01), sleep=waits.append
    )
    assert response.status_code == 200 and len(waits) == 2 and waits[1] == 0.0


def test_get_with_retries_returns_the_last_error_response(hub: LoopbackHub) -> None:
    url = hub.serve("j", Served(data=b"{}", faults=[Status(502)] * 3))
    response = get_with_retries(
        make_session(), url, retry=RetryPolicy(attempts=3), sleep=lambda _: None
    )
    assert response.status_code == 502
