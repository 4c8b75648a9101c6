"""Segmented downloads against a real loopback server: ranges, fallback, resume, tokens, cap."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from provisioner.core.errors import DownloadError, IntegrityError
from provisioner.sources import download as download_module
from provisioner.sources import segments
from provisioner.sources.download import DownloadResult, download, staging_name
from provisioner.sources.http import HostScopedBearer, RetryPolicy
from provisioner.sources.ranges import SegmentMap, done_prefix, merge_ranges, missing_ranges
from provisioner.sources.segments import HostLimiter
from tests.support.civitai import Drop, LoopbackHub, Served, Status
from tests.support.downloads import blob, leftovers, sha

MiB = 1024 * 1024
SIZE = 8 * MiB + 123  # eight 1 MiB pieces and a tail


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segment files of a few MiB (the real thresholds are 64 MiB files, 16 MiB pieces)."""
    monkeypatch.setattr(segments, "PIECE_SIZE", 1 * MiB)
    monkeypatch.setattr(download_module, "MIN_SEGMENTED_SIZE", 4 * MiB)


def fetch(
    url: str,
    root: Path,
    staging: Path,
    session: requests.Session,
    expected: str,
    **options: Any,
) -> DownloadResult:
    options.setdefault("connections", 4)
    return download(
        url,
        root / "models" / "checkpoints" / "big.safetensors",
        staging=staging,
        expected_sha256=expected,
        session=session,
        label="big",
        **options,
    )


def ranges_asked(hub: LoopbackHub) -> list[tuple[int, int]]:
    asked = []
    for record in hub.requests_to("/files/"):
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", record.headers.get("Range", ""))
        assert match, f"a request without a closed range: {record.headers}"
        asked.append((int(match.group(1)), int(match.group(2)) + 1))
    return asked


def test_ranges_are_honoured_over_several_connections(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    data = blob(SIZE, 1)
    url = hub.serve("big.bin", Served(data=data, rate=16 * MiB, etag='"big"'))

    result = fetch(url, root, staging, session, sha(data))

    assert result.path.read_bytes() == data
    assert (result.sha256, result.size, result.bytes_transferred) == (sha(data), SIZE, SIZE)
    asked = ranges_asked(hub)
    assert asked[0] == (0, 1)  # the probe
    assert merge_ranges(asked[1:]) == [(0, SIZE)]
    assert sum(b - a for a, b in asked[1:]) == SIZE  # no byte asked twice
    assert hub.bytes_sent() == SIZE + 1
    assert hub.peak_in_flight > 1
    assert [r.headers.get("If-Range") for r in hub.records[1:]] == ['"big"'] * (len(asked) - 1)
    assert leftovers(staging) == []


def test_server_without_range_support_falls_back_to_one_stream(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    data = blob(SIZE, 2)
    url = hub.serve("big.bin", Served(data=data, ranges=False))

    result = fetch(url, root, staging, session, sha(data))

    assert result.path.read_bytes() == data
    records = hub.requests_to("/files/")
    assert [r.status for r in records] == [200]  # the probe's 200 became the stream
    assert hub.bytes_sent() == SIZE


def test_small_file_is_one_stream(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    data = blob(1 * MiB, 3)
    url = hub.serve("small.bin", Served(data=data))

    result = fetch(url, root, staging, session, sha(data))

    assert result.path.read_bytes() == data
    assert [r.headers.get("Range") for r in hub.requests_to("/files/")] == ["bytes=0-0", None]


def test_known_small_size_skips_the_probe(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    data = blob(1 * MiB, 4)
    url = hub.serve("small.bin", Served(data=data))

    fetch(url, root, staging, session, sha(data), expected_size=len(data))

    assert [r.headers.get("Range") for r in hub.requests_to("/files/")] == [None]


def test_drop_mid_segment_refetches_only_the_missing_bytes(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session, quick_retry: RetryPolicy
) -> None:
    data = blob(SIZE, 5)
    url = hub.serve("big.bin", Served(data=data, faults=[Drop(0.5, start=3 * MiB)]))

    result = fetch(url, root, staging, session, sha(data), retry=quick_retry)

    assert result.path.read_bytes() == data
    assert hub.bytes_sent() == SIZE + 1  # the dropped half was kept, only the rest re-asked
    assert (3 * MiB + MiB // 2, 4 * MiB) in ranges_asked(hub)


def test_rerun_after_failed_segments_resumes_only_missing_ranges(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    data = blob(SIZE, 6)
    drops: list[Status | Drop] = [Drop(0.25, start=2 * MiB), Drop(0.5, start=5 * MiB)]
    served = Served(data=data, etag='"big"', faults=drops)
    url = hub.serve("big.bin", served)
    once = RetryPolicy(attempts=1, backoff_base=0.01, timeout_connect=5.0, timeout_read=5.0)

    with pytest.raises(DownloadError, match="failed after 1 attempts") as failed:
        fetch(url, root, staging, session, sha(data), retry=once, connections=2)
    assert "run again to resume" in (failed.value.hint or "")

    part = staging / staging_name(url, sha(data))
    kept = SegmentMap.load(part)
    assert kept is not None and kept.total == SIZE and kept.validator == '"big"'
    kept_bytes = sum(b - a for a, b in kept.done)
    assert 0 < kept_bytes < SIZE
    assert not (root / "models" / "checkpoints" / "big.safetensors").exists()
    hub.reset()

    result = fetch(url, root, staging, session, sha(data))

    assert result.path.read_bytes() == data
    assert result.bytes_transferred == SIZE - kept_bytes
    assert hub.bytes_sent() == SIZE - kept_bytes + 1
    assert merge_ranges(ranges_asked(hub)[1:]) == missing_ranges(kept.done, SIZE)
    assert leftovers(staging) == []


def test_changed_file_on_resume_starts_over(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    old, new = blob(SIZE, 7), blob(SIZE, 8)
    url = hub.serve("big.bin", Served(data=old, etag='"v1"', faults=[Drop(0.5, start=4 * MiB)]))
    once = RetryPolicy(attempts=1, backoff_base=0.01, timeout_connect=5.0, timeout_read=5.0)
    with pytest.raises(DownloadError):
        fetch(url, root, staging, session, sha(new), retry=once)
    hub.serve("big.bin", Served(data=new, etag='"v2"'))
    hub.reset()

    result = fetch(url, root, staging, session, sha(new))

    assert result.path.read_bytes() == new
    assert hub.bytes_sent() == SIZE + 1  # nothing of the old file was kept


def test_wrong_hash_places_nothing_and_removes_the_part(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    data = blob(SIZE, 9)
    url = hub.serve("big.bin", Served(data=data))

    with pytest.raises(IntegrityError, match="SHA256 mismatch for big"):
        fetch(url, root, staging, session, "0" * 64)

    assert not (root / "models" / "checkpoints" / "big.safetensors").exists()
    assert leftovers(staging) == []


def test_redirect_to_the_cdn_carries_no_token_on_any_segment(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    data = blob(SIZE, 10)
    hub.serve("v7-0", Served(data=data))
    hub.redirects[700] = "v7-0"
    hub.required_token = "tok-secret"
    auth = HostScopedBearer("tok-secret", hub.api_base)

    url = f"{hub.api_base}/api/download/models/7"

    result = fetch(url, root, staging, session, sha(data), auth=auth)

    assert result.path.read_bytes() == data
    api = hub.requests_to("/api/download/", server="api")
    cdn = hub.requests_to("/files/", server="cdn")
    assert len(cdn) >= 3 and len(api) == len(cdn)  # every segment went through the redirect
    assert all(r.headers.get("Authorization") == "Bearer tok-secret" for r in api)
    assert all("Authorization" not in r.headers for r in cdn)
    assert all("tok-secret" not in r.path for r in cdn)


def test_connections_per_host_are_capped_over_concurrent_downloads(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    files = [blob(SIZE, 20 + i) for i in range(2)]
    urls = [hub.serve(f"f{i}.bin", Served(data=d, rate=8 * MiB)) for i, d in enumerate(files)]
    limiter = HostLimiter(cap=3)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            download(
                urls[i],
                root / "models" / f"f{i}.bin",
                staging=staging,
                expected_sha256=sha(files[i]),
                session=session,
                connections=4,
                limiter=limiter,
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [(root / "models" / f"f{i}.bin").read_bytes() == d for i, d in enumerate(files)] == [
        True,
        True,
    ]
    assert 2 <= hub.peak_in_flight <= 3


def test_segmented_part_continues_as_one_stream_from_its_finished_prefix(
    hub: LoopbackHub, root: Path, staging: Path, session: requests.Session
) -> None:
    data = blob(SIZE, 11)
    url = hub.serve("big.bin", Served(data=data, faults=[Drop(0.5, start=2 * MiB)]))
    once = RetryPolicy(attempts=1, backoff_base=0.01, timeout_connect=5.0, timeout_read=5.0)
    with pytest.raises(DownloadError):
        fetch(url, root, staging, session, sha(data), retry=once, connections=2)
    kept = SegmentMap.load(staging / staging_name(url, sha(data)))
    assert kept is not None
    prefix = done_prefix(kept.done)
    assert prefix > 0
    hub.reset()

    result = fetch(url, root, staging, session, sha(data), connections=1)

    assert result.path.read_bytes() == data
    assert hub.bytes_sent() == SIZE - prefix
    assert leftovers(staging) == []
