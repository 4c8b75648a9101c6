"""Phoenix works with the huggingface_hub the image pins (0.35) and with the newest (2.x).

The image pins ``HUGGINGFACE_HUB_VERSION`` (transformers needs a hub < 1.0) while development
machines and olah have a newer one. CI runs one of them; these tests keep the other honest
cheaply:

* the hub API Phoenix touches is one declared list (``HUB_API``), checked against the
  installed hub, and a scan of ``provisioner/`` fails when code starts using anything not on it
  (add it only after ``scripts/dev/hub-compat.sh`` passes: see docs/compat.md);
* the two code paths that differ between versions (progress without ``tqdm_class``, transport
  errors from requests or httpx) are exercised here whatever hub is installed.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
import requests

import provisioner.sources.huggingface as hfmod
from provisioner.core.config import load_versions
from provisioner.core.errors import SourceError
from provisioner.sources.hub_progress import StagingWatch
from provisioner.sources.huggingface import (
    HFClient,
    _accepts,
    _transport_error,
)
from provisioner.sources.progress import LogProgress
from tests.support.hub import FluxHub
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]

#: Every huggingface_hub name Phoenix uses unconditionally, checked to exist in 0.35.3 and 2.4.0.
#: ``module:name`` is an import or a module attribute; ``module:func(kw)`` a keyword argument;
#: ``HfApi.method`` / ``HfApi.method(kw)`` a client method and its keyword arguments.
#: Feature-detected names (``hf_hub_download(tqdm_class)``, ``errors.HTTPError``) are not here:
#: they are reached through ``_accepts`` / ``getattr`` with a fallback.
HUB_API = frozenset(
    {
        "huggingface_hub:HfApi",
        "huggingface_hub:HfApi(endpoint)",
        "huggingface_hub:HfApi(token)",
        "huggingface_hub:hf_hub_download",
        "huggingface_hub:hf_hub_download(revision)",
        "huggingface_hub:hf_hub_download(local_dir)",
        "huggingface_hub:hf_hub_download(endpoint)",
        "huggingface_hub:hf_hub_download(token)",
        "huggingface_hub:errors",
        "huggingface_hub.errors:LocalEntryNotFoundError",
        "huggingface_hub.errors:GatedRepoError",
        "huggingface_hub.errors:RepositoryNotFoundError",
        "huggingface_hub.errors:RevisionNotFoundError",
        "huggingface_hub.errors:EntryNotFoundError",
        "huggingface_hub.errors:HfHubHTTPError",
        "huggingface_hub.utils.tqdm:disable_progress_bars",
        "HfApi.model_info",
        "HfApi.model_info(revision)",
        "HfApi.get_paths_info",
        "HfApi.get_paths_info(revision)",
        "HfApi.list_repo_tree",
        "HfApi.list_repo_tree(recursive)",
        "HfApi.list_repo_tree(revision)",
    }
)

#: Fields Phoenix reads from the hub's result objects (``getattr`` on untyped values).
HUB_FIELDS = {
    "RepoFile": {"path", "size", "blob_id", "lfs"},
    "BlobLfsInfo": {"sha256"},
    "ModelInfo": {"sha"},
}


def _hub_uses(source: str) -> set[str]:
    """The hub API entries one module uses, in ``HUB_API``'s notation.

    Imports from ``huggingface_hub*``, attributes of a hub module imported under an alias,
    keyword arguments of calls to imported hub callables, and ``HfApi`` methods called on
    ``api`` or ``self._api()`` (the only ways Phoenix holds a client).
    """
    tree = ast.parse(source)
    uses: set[str] = set()
    callables: dict[str, str] = {}  # local name -> "module:name"
    modules: dict[str, str] = {}  # alias -> hub module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("huggingface_hub"):
            for alias in node.names:
                uses.add(f"{node.module}:{alias.name}")
                local = alias.asname or alias.name
                callables[local] = f"{node.module}:{alias.name}"
                if alias.name == "errors":
                    modules[local] = f"{node.module}.errors"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            uses.add(f"{modules[node.value.id]}:{node.attr}")
        if not isinstance(node, ast.Call):
            continue
        kws = [k.arg for k in node.keywords if k.arg is not None]
        func = node.func
        if isinstance(func, ast.Name) and func.id in callables:
            uses.update(f"{callables[func.id]}({kw})" for kw in kws)
        elif isinstance(func, ast.Attribute) and _is_api(func.value):
            uses.add(f"HfApi.{func.attr}")
            uses.update(f"HfApi.{func.attr}({kw})" for kw in kws)
    return uses


def _is_api(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "api"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "_api"
    )


def _exists(entry: str) -> bool:
    """Whether a ``HUB_API`` entry exists in the installed huggingface_hub."""
    from huggingface_hub import HfApi

    kw = None
    if entry.endswith(")"):
        entry, kw = entry[:-1].split("(")
    if entry.startswith("HfApi."):
        target = getattr(HfApi, entry.removeprefix("HfApi."), None)
    else:
        module, name = entry.split(":")
        target = getattr(importlib.import_module(module), name, None)
        if target is None:  # a submodule not imported by its package
            try:
                target = importlib.import_module(f"{module}.{name}")
            except ImportError:
                return False
    if target is None:
        return False
    return kw is None or kw in inspect.signature(target).parameters


def test_provisioner_uses_only_the_declared_hub_api() -> None:
    used: set[str] = set()
    for path in sorted((REPO / "provisioner").rglob("*.py")):
        used |= _hub_uses(path.read_text(encoding="utf-8"))
    undeclared = sorted(used - HUB_API)
    assert not undeclared, (
        f"provisioner uses huggingface_hub API not checked on both versions: {undeclared}; "
        "run scripts/dev/hub-compat.sh (docs/compat.md), then add them to HUB_API"
    )
    assert used == HUB_API, f"HUB_API lists entries no longer used: {sorted(HUB_API - used)}"


@pytest.mark.parametrize("entry", sorted(HUB_API))
def test_declared_hub_api_exists_in_the_installed_hub(entry: str) -> None:
    assert _exists(entry), f"huggingface_hub has no {entry}"


@pytest.mark.parametrize("cls", sorted(HUB_FIELDS))
def test_result_fields_exist_in_the_installed_hub(cls: str) -> None:
    from huggingface_hub import hf_api

    fields = {f.name for f in dataclasses.fields(getattr(hf_api, cls))}
    assert HUB_FIELDS[cls] <= fields


def test_the_scan_sees_imports_kwargs_and_client_methods() -> None:
    source = (
        "from huggingface_hub import errors as hf, hf_hub_download\n"
        "def f(self, api):\n"
        "    hf_hub_download('r', 'p', revision='x', **extra)\n"
        "    api.list_repo_tree('r', recursive=True)\n"
        "    self._api().model_info('r')\n"
        "    raise hf.GatedRepoError\n"
        "    getattr(hf, 'HTTPError', None)\n"
    )
    assert _hub_uses(source) == {
        "huggingface_hub:errors",
        "huggingface_hub:hf_hub_download",
        "huggingface_hub:hf_hub_download(revision)",
        "HfApi.list_repo_tree",
        "HfApi.list_repo_tree(recursive)",
        "HfApi.model_info",
        "huggingface_hub.errors:GatedRepoError",
    }


def test_compat_doc_and_script_follow_the_pin() -> None:
    pin = load_versions()["HUGGINGFACE_HUB_VERSION"]
    doc = (REPO / "docs" / "compat.md").read_text(encoding="utf-8")
    assert "scripts/dev/hub-compat.sh" in doc
    assert pin in doc, f"docs/compat.md should name the pinned huggingface_hub {pin}"
    script = (REPO / "scripts" / "dev" / "hub-compat.sh").read_text(encoding="utf-8")
    assert "HUGGINGFACE_HUB_VERSION" in script


# --- the transport error: requests (hub < 1.0) or httpx/httpx2 (hub >= 1.0) ---------------


def test_transport_root_of_requests_is_request_exception() -> None:
    # hub < 1.0 re-exports requests.HTTPError; refused connections are ConnectionError,
    # a sibling of HTTPError under RequestException
    root = _transport_error(requests.HTTPError)
    assert root is requests.RequestException
    assert issubclass(requests.ConnectionError, root)
    assert issubclass(requests.Timeout, root)


def test_transport_root_when_http_error_is_the_root() -> None:
    root_cls = type("HTTPError", (Exception,), {"__module__": "somehttp._exceptions"})
    child = type("ConnectError", (root_cls,), {"__module__": "somehttp._exceptions"})
    assert _transport_error(root_cls) is root_cls
    assert _transport_error(child) is root_cls
    assert _transport_error(None) is OSError


def test_transport_root_of_the_installed_hub_covers_a_refused_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SourceError, match="cannot reach") as info:
        HFClient().resolve_commit("org/repo", None)
    assert isinstance(info.value.__cause__, Exception)


# --- progress: hub >= 1.0 drives a tqdm_class; older ones are watched in staging ----------


def test_accepts_reads_signatures_through_wrappers() -> None:
    from huggingface_hub import hf_hub_download

    def f(a: int, *, tqdm_class: object = None) -> None: ...

    assert _accepts(f, "tqdm_class")
    assert not _accepts(f, "b")
    assert _accepts(hf_hub_download, "local_dir")  # through the hub's argument validator
    assert not _accepts(object(), "x")  # nothing to inspect: no feature


class Recorder:
    """A Progress that records what a transfer reported."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def task(self, label: str, total: int | None, done: int = 0) -> Recorder:
        self.events.append(("task", (label, total, done)))
        return self

    def update(self, nbytes: int) -> None:
        self.events.append(("update", nbytes))

    def restart(self, done: int, total: int | None) -> None:
        self.events.append(("restart", (done, total)))

    def close(self, ok: bool = True) -> None:
        self.events.append(("close", ok))


def test_staging_watch_reports_growth_restart_and_end(tmp_path: Path) -> None:
    staging = tmp_path / "stage"
    part = staging / ".cache" / "huggingface" / "download" / "x.incomplete"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"a" * 100)  # left by an interrupted run: resumed from here
    (staging / ".cache" / "huggingface" / "download" / "x.metadata").write_bytes(b"m" * 10)
    rec = Recorder()
    watch = StagingWatch(rec, "hf:o/r/x", staging, 1000, interval=3600)
    with watch:
        part.write_bytes(b"a" * 400)
        watch.poll()
        watch.poll()  # nothing new: nothing reported
        part.write_bytes(b"a" * 50)  # the hub started over
        watch.poll()
        part.rename(staging / "x")
        (staging / "x").write_bytes(b"a" * 1000)
    assert rec.events == [
        ("task", ("hf:o/r/x", 1000, 100)),
        ("update", 300),
        ("restart", (50, 1000)),
        ("update", 950),
        ("close", True),
    ]


def test_staging_watch_closes_failed_on_error(tmp_path: Path) -> None:
    rec = Recorder()
    with pytest.raises(RuntimeError), StagingWatch(rec, "l", tmp_path / "none", None):
        raise RuntimeError("transfer died")
    assert rec.events == [("task", ("l", None, 0)), ("close", False)]


def test_download_progress_without_tqdm_class(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path huggingface_hub < 1.0 takes, forced on whichever hub is installed."""
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    monkeypatch.setattr(hfmod, "_accepts", lambda fn, name: False)
    lines: list[str] = []
    client = HFClient()
    f = client.resolve("black-forest-labs/FLUX.1-dev", None, ["flux1-dev.safetensors"]).files[0]
    try:
        progress = LogProgress(0.0, emit=lines.append)
        staged = client.download(f, tmp_path / "stage", expected_sha256=None, progress=progress)
        assert are_progress_bars_disabled()  # no second bar from the hub
    finally:
        if not was_disabled:
            enable_progress_bars()
    label = "hf:black-forest-labs/FLUX.1-dev/flux1-dev.safetensors"
    assert staged.stat().st_size == f.size
    assert lines[0].startswith(f"{label}: starting")
    assert any("100.0%" in line for line in lines)
    assert lines[-1].startswith(f"{label}: done")
