"""The download engine against a real loopback server: verify, resume, restart, retry, place."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from provisioner.core.errors import DiskSpaceError, DownloadError, IntegrityError, NotFoundError
from provisioner.sources.download import (
    DownloadResult,
    DownloadTask,
    check_free_space,
    download,
    download_all,
    staging_name,
)
from provisioner.sources.http import RetryPolicy, attach_bearer
from provisioner.sources.progress import LogProgress
from tests.support.civitai import Drop, LoopbackHub, Served, Status
from tests.support.downloads import blob, leftovers, sha
from tests.support.servers import free_port

MiB = 1024 * 1024
#: the ``get`` fixture: ``download(url, dest, sha256, **options)`` with staging and session bound
Get = Callable[..., DownloadResult]


@pytest.fixture
def get(session: requests.Session, staging: Path) -> Get:
    """``download`` into this test's staging folder with its session: (url, dest, sha256, ...)."""

    def run(url: str, dest: Path, expected_sha256: str | None, **options: Any) -> DownloadResult:
        return download(
            url, dest, staging=staging, expected_sha256=expected_sha256, session=session, **options
        )

    return run


def test_download_places_verified_file_and_cleans_staging(
    hub: LoopbackHub, root: Path, staging: Path, get: Get
) -> None:
    data = blob(3 * MiB + 17)
    url = hub.serve("a.safetensors", Served(data=data))
    dest = root / "models" / "loras" / "sub" / "a.safetensors"

    result = get(url, dest, sha(data).upper(), label="civitai:1@2")

    assert dest.read_bytes() == data
    assert (result.path, result.sha256, result.size) == (dest, sha(data), len(data))
    assert result.bytes_transferred == len(data)
    assert leftovers(staging) == []
    assert hub.requests_to("/files/")[0].headers.get("Accept-Encoding") == "identity"


def test_hash_mismatch_raises_names_both_hashes_and_places_nothing(
    hub: LoopbackHub, root: Path, staging: Path, get: Get
) -> None:
    good, bad = blob(MiB, 1), blob(MiB, 2)
    url = hub.serve("m.safetensors", Served(data=bad))
    dest = root / "models" / "checkpoints" / "m.safetensors"

    with pytest.raises(IntegrityError) as info:
        get(url, dest, sha(good), label="civitai:7@8")

    text = info.value.render()
    assert "civitai:7@8" in text and sha(good) in text and sha(bad) in text
    assert not dest.exists() and list((root / "models").rglob("*.safetensors")) == []
    assert leftovers(staging) == []


def test_drop_at_half_is_resumed_in_the_same_call(
    hub: LoopbackHub,
    root: Path,
    quick_retry: RetryPolicy,
    get: Get,
) -> None:
    data = blob(2 * MiB)
    url = hub.serve("f.bin", Served(data=data, faults=[Drop(0.5)]))

    result = get(url, root / "f.bin", sha(data), retry=quick_retry)

    first, second = hub.requests_to("/files/")
    assert first.body_bytes == MiB and "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={MiB}-" and second.body_bytes == MiB
    assert second.headers["If-Range"] == hub.files["f.bin"].etag
    assert result.bytes_transferred == len(data) and result.sha256 == sha(data)


def test_rerun_after_interruption_transfers_only_the_rest(
    hub: LoopbackHub, root: Path, staging: Path, get: Get
) -> None:
    data = blob(4 * MiB)
    url = hub.serve("f.bin", Served(data=data, faults=[Drop(0.5)]))
    dest = root / "models" / "vae" / "f.bin"
    once = RetryPolicy(attempts=1)

    with pytest.raises(DownloadError, match=r"failed after 1 attempts: connection lost") as info:
        get(url, dest, sha(data), retry=once)
    assert "run again to resume" in info.value.render()
    assert not dest.exists()
    assert (staging / staging_name(url, sha(data))).stat().st_size == 2 * MiB
    hub.reset()

    result = get(url, dest, sha(data))

    assert hub.bytes_sent() == 2 * MiB  # counted at the server: only the missing half
    assert result.bytes_transferred == 2 * MiB and dest.read_bytes() == data
    assert leftovers(staging) == []


def test_server_ignoring_range_restarts_from_zero(hub: LoopbackHub, root: Path, get: Get) -> None:
    data = blob(2 * MiB, 3)
    url = hub.serve("n.bin", Served(data=data, ranges=False, faults=[Drop(0.5)]))
    dest = root / "n.bin"
    with pytest.raises(DownloadError):
        get(url, dest, sha(data), retry=RetryPolicy(attempts=1))
    hub.reset()

    result = get(url, dest, sha(data))

    (again,) = hub.requests_to("/files/")
    assert again.headers["Range"] == f"bytes={MiB}-" and again.status == 200
    assert result.sha256 == sha(data) and dest.read_bytes() == data
    assert result.bytes_transferred == len(data)


def test_changed_file_behind_the_same_url_restarts_via_if_range(
    hub: LoopbackHub, root: Path, get: Get
) -> None:
    old, new = blob(2 * MiB, 4), blob(2 * MiB, 5)
    served = Served(data=old, faults=[Drop(0.5)])
    url = hub.serve("c.bin", served)
    with pytest.raises(DownloadError):
        get(url, root / "c.bin", None, retry=RetryPolicy(attempts=1))
    hub.serve("c.bin", Served(data=new))  # new bytes, new ETag

    result = get(url, root / "c.bin", None)

    assert result.sha256 == sha(new) and (root / "c.bin").read_bytes() == new
    assert hub.requests_to("/files/")[-1].status == 200


def test_bad_prefix_in_staging_is_redone_once_from_zero(
    hub: LoopbackHub, root: Path, staging: Path, get: Get
) -> None:
    data = blob(MiB, 6)
    url = hub.serve("p.bin", Served(data=data))
    part = staging / staging_name(url, sha(data))
    part.write_bytes(b"\0" * 1000)  # garbage a crash (or another tool) left behind

    result = get(url, root / "p.bin", sha(data))

    assert result.sha256 == sha(data) and (root / "p.bin").read_bytes() == data


def test_complete_part_is_verified_without_refetching_the_body(
    hub: LoopbackHub, root: Path, staging: Path, get: Get
) -> None:
    data = blob(MiB, 7)
    url = hub.serve("done.bin", Served(data=data))
    (staging / staging_name(url, sha(data))).write_bytes(data)

    result = get(url, root / "done.bin", sha(data))

    assert [r.status for r in hub.requests_to("/files/")] == [416]
    assert result.bytes_transferred == 0 and (root / "done.bin").read_bytes() == data


def test_500_then_200_succeeds(
    hub: LoopbackHub,
    root: Path,
    quick_retry: RetryPolicy,
    get: Get,
) -> None:
    data = blob(64 * 1024)
    url = hub.serve("r.bin", Served(data=data, faults=[Status(500), Status(503)]))

    result = get(url, root / "r.bin", sha(data), retry=quick_retry)

    assert [r.status for r in hub.requests_to("/files/")] == [500, 503, 200]
    assert result.sha256 == sha(data)


def test_429_retry_after_is_honoured(
    hub: LoopbackHub,
    root: Path,
    quick_retry: RetryPolicy,
    get: Get,
) -> None:
    data = blob(64 * 1024)
    url = hub.serve("t.bin", Served(data=data, faults=[Status(429, {"Retry-After": "1"})]))

    began = time.monotonic()
    get(url, root / "t.bin", sha(data), retry=quick_retry)
    waited = time.monotonic() - began

    assert waited >= 1.0
    assert [r.status for r in hub.requests_to("/files/")] == [429, 200]


def test_retry_after_is_capped(hub: LoopbackHub, root: Path, get: Get) -> None:
    data = blob(1024)
    url = hub.serve("t.bin", Served(data=data, faults=[Status(429, {"Retry-After": "3600"})]))
    waits: list[float] = []

    get(url, root / "t.bin", sha(data), retry=RetryPolicy(retry_after_max=0.25), sleep=waits.append)

    assert waits == [0.25]


def test_retries_exhausted_keeps_the_part_for_a_resume(
    hub: LoopbackHub,
    root: Path,
    staging: Path,
    quick_retry: RetryPolicy,
    get: Get,
) -> None:
    data = blob(MiB)
    url = hub.serve("x.bin", Served(data=data, faults=[Drop(0.25)] + [Status(502)] * 10))

    with pytest.raises(DownloadError, match="after 4 attempts: HTTP 502"):
        get(url, root / "x.bin", sha(data), retry=quick_retry)

    assert (staging / staging_name(url, sha(data))).stat().st_size == MiB // 4
    assert not (root / "x.bin").exists()


def test_connection_refused_is_retried_then_reported(
    root: Path, quick_retry: RetryPolicy, get: Get
) -> None:
    port = free_port()  # nobody listens on it
    with pytest.raises(DownloadError, match="connection failed"):
        get(f"http://127.0.0.1:{port}/x", root / "x", None, retry=quick_retry)


def test_404_is_not_found_without_retries(
    hub: LoopbackHub, root: Path, staging: Path, get: Get
) -> None:
    with pytest.raises(NotFoundError, match="HTTP 404"):
        get(f"{hub.cdn_base}/files/missing", root / "m", None)
    assert len(hub.requests_to("/files/")) == 1
    assert leftovers(staging) == []  # no empty .part left behind: there is nothing to resume


def test_disk_preflight_refuses_before_any_request(
    hub: LoopbackHub, root: Path, staging: Path, get: Get
) -> None:
    url = hub.serve("big.bin", Served(data=b"x"))

    with pytest.raises(DiskSpaceError) as info:
        get(url, root / "big.bin", "0" * 64, expected_size=1 << 60, label="civitai:9")

    assert "civitai:9" in info.value.message and "free" in info.value.message
    assert hub.requests_to("/") == []
    assert leftovers(staging) == []


def test_check_free_space_measures_the_nearest_existing_folder(tmp_path: Path) -> None:
    check_free_space(tmp_path / "not" / "yet", 1, "one byte")
    with pytest.raises(DiskSpaceError, match=r"need 1152921\.5 TB, only .* free"):
        check_free_space(tmp_path / "not" / "yet", 1 << 60, "the plan's models")


def test_token_goes_to_the_api_host_only_not_to_the_cdn_redirect(
    hub: LoopbackHub, session: requests.Session, root: Path, get: Get
) -> None:
    data = blob(256 * 1024)
    hub.add_model(
        5,
        name="M",
        type="LORA",
        versions=[{"id": 50, "files": [{"name": "m.safetensors", "data": data}]}],
    )
    hub.required_token = "tok-SECRET-123"
    attach_bearer(session, "tok-SECRET-123", hub.api_base)

    get(f"{hub.api_base}/api/download/models/50", root / "m.safetensors", sha(data))

    (api,) = hub.requests_to("/api/download/", server="api")
    (cdn,) = hub.requests_to("/files/", server="cdn")
    assert api.headers["Authorization"] == "Bearer tok-SECRET-123"
    assert "Authorization" not in cdn.headers
    assert all("tok-SECRET" not in r.path for r in hub.records)


def test_different_files_never_share_a_staging_name() -> None:
    a = staging_name("http://h/a", "A" * 64)
    assert a == staging_name("http://mirror/a", "a" * 64)  # same bytes, same part
    assert a != staging_name("http://h/a", "b" * 64)
    assert staging_name("http://h/a", None) != staging_name("http://h/b", None)


def test_concurrent_downloads_of_one_file_are_serialised(
    hub: LoopbackHub, root: Path, staging: Path, get: Get
) -> None:
    data = blob(2 * MiB, 8)
    url = hub.serve("s.bin", Served(data=data, rate=8 * MiB))
    results = []

    def run(name: str) -> None:
        results.append(get(url, root / name, sha(data)))

    threads = [threading.Thread(target=run, args=(n,)) for n in ("one.bin", "two.bin")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r.path.name for r in results) == ["one.bin", "two.bin"]
    assert (root / "one.bin").read_bytes() == data == (root / "two.bin").read_bytes()
    assert leftovers(staging) == []


def test_download_all_runs_in_parallel_and_reports_each_outcome(
    hub: LoopbackHub, session: requests.Session, root: Path, staging: Path
) -> None:
    files = {f"f{i}.bin": blob(256 * 1024, 10 + i) for i in range(4)}
    rate = 1024 * 1024  # each connection: 0.25 s per file
    tasks = [
        DownloadTask(
            hub.serve(name, Served(data=data, rate=rate)),
            root / name,
            staging,
            sha(data),
            session,
            label=name,
        )
        for name, data in files.items()
    ]
    tasks.append(
        DownloadTask(
            f"{hub.cdn_base}/files/absent", root / "absent", staging, None, session, label="absent"
        )
    )

    hub.reset()
    outcomes = download_all(tasks, jobs=5)

    assert [o.error is None for o in outcomes] == [True] * 4 + [False]
    assert isinstance(outcomes[-1].error, NotFoundError)
    for outcome, (name, data) in zip(outcomes, files.items(), strict=False):
        assert outcome.result is not None and outcome.result.sha256 == sha(data)
        assert (root / name).read_bytes() == data
    assert leftovers(staging) == []
    # each file takes >= 0.25 s to serve, so parallel transfers overlap on the server even on
    # loaded cores (a wall-clock bound would not hold there)
    assert hub.peak_in_flight >= 2


def test_log_progress_reports_percent_rate_and_eta(hub: LoopbackHub, root: Path, get: Get) -> None:
    data = blob(3_000_000, 9)
    url = hub.serve("p.bin", Served(data=data))
    lines: list[str] = []
    ticks = iter(range(1000))

    get(
        url,
        root / "p.bin",
        sha(data),
        progress=LogProgress(1.0, clock=lambda: float(next(ticks)), emit=lines.append),
        label="lora:p",
        expected_size=len(data),
    )

    assert lines[0] == "lora:p: starting (3.0 MB)"
    assert any("%" in line and "/s" in line and "ETA" in line for line in lines[1:-1])
    assert lines[-1].startswith("lora:p: done, 3.0 MB in")


def test_staging_on_another_filesystem_still_places_atomically(
    hub: LoopbackHub, session: requests.Session, tmp_path: Path
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem")
    data = blob(MiB, 11)
    url = hub.serve("x.bin", Served(data=data))
    import tempfile

    with tempfile.TemporaryDirectory(dir=shm) as other:
        result = download(
            url,
            tmp_path / "models" / "x.bin",
            staging=Path(other),
            expected_sha256=sha(data),
            session=session,
        )
        assert os.listdir(other) == []
    assert result.path.read_bytes() == data


def test_unwritable_destination_is_a_download_error_not_a_traceback(
    hub: LoopbackHub, root: Path, get: Get
) -> None:
    data = blob(1024)
    url = hub.serve("w.bin", Served(data=data))
    (root / "models" / "loras").write_text("a file where a folder should be")

    with pytest.raises(DownloadError, match=r"cannot write w\.bin") as info:
        get(url, root / "models" / "loras" / "w.bin", sha(data))
    assert "writable" in info.value.render()


def test_redirect_loop_is_a_download_error(hub: LoopbackHub, root: Path, get: Get) -> None:
    loop = f"{hub.cdn_base}/files/loop"
    hub.serve("loop", Served(data=b"", faults=[Status(302, {"Location": loop})] * 40))
    with pytest.raises(DownloadError, match="cannot download loop: TooManyRedirects"):
        get(loop, root / "loop", None)
