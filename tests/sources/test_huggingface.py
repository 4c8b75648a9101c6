"""The Hugging Face source against olah serving git mirrors (real Hub protocol on loopback)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from provisioner.core.errors import AuthError, IntegrityError, NotFoundError, SourceError
from provisioner.core.redact import forget_secrets, redact
from provisioner.sources.huggingface import HFClient, endpoint, license_page, matches
from tests.support.hub import GATED_TOKEN, FluxHub
from tests.support.servers import free_port

FLUX = "black-forest-labs/FLUX.1-dev"
ENC = "comfyanonymous/flux_text_encoders"


def test_endpoint_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert endpoint() == "https://huggingface.co"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    assert endpoint() == "http://127.0.0.1:9"
    assert HFClient().endpoint == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("flux1-dev.safetensors", "*.safetensors", True),
        ("transformer/model.safetensors", "*.safetensors", False),
        ("transformer/model.safetensors", "transformer/*.safetensors", True),
        ("split/a/b.safetensors", "split/*", True),
        ("t5xxl_fp16.safetensors", "t5xxl_fp1?.safetensors", True),
        ("clip_l.safetensors", "t5*", False),
    ],
)
def test_pattern_matching(path: str, pattern: str, expected: bool) -> None:
    assert matches(path, pattern) is expected


def test_resolve_literal_names_gives_commit_and_lfs_sha(
    flux_hub: FluxHub, hf_endpoint: str
) -> None:
    res = HFClient().resolve(FLUX, None, ["flux1-dev.safetensors", "ae.safetensors"])
    assert res.commit == flux_hub.hub.repos[FLUX].commits[-1]
    assert res.revision == "main"
    by_path = {f.path: f for f in res.files}
    assert set(by_path) == {"flux1-dev.safetensors", "ae.safetensors"}
    for path, f in by_path.items():
        assert f.sha256 == flux_hub.sha(FLUX, path)
        assert f.size == len(flux_hub.files[FLUX][path])
        assert f.commit == res.commit


def test_resolve_glob_top_level_only(flux_hub: FluxHub, hf_endpoint: str) -> None:
    res = HFClient().resolve(FLUX, "main", ["*.safetensors"])
    assert [f.path for f in res.files] == ["ae.safetensors", "flux1-dev.safetensors"]
    res = HFClient().resolve(FLUX, "main", ["transformer/*"])
    assert [f.path for f in res.files] == ["transformer/diffusion_pytorch_model.safetensors"]


def test_tag_and_branch_resolve_to_their_commits(flux_hub: FluxHub, hf_endpoint: str) -> None:
    tags = flux_hub.tags["acme/evolving"]
    client = HFClient()
    assert client.resolve_commit("acme/evolving", "v1.0") == tags["v1.0"]
    assert client.resolve_commit("acme/evolving", "main") == tags["main"]
    old = client.resolve("acme/evolving", "v1.0", ["weights.safetensors"]).files[0]
    assert old.sha256 == hashlib.sha256(
        flux_hub.files["acme/evolving@v1.0"]["weights.safetensors"]
    ).hexdigest()
    # a full commit is used as is
    pinned = client.resolve("acme/evolving", tags["v1.0"], ["weights.safetensors"])
    assert pinned.commit == tags["v1.0"] and pinned.files[0].sha256 == old.sha256


def test_missing_file_pattern_revision_and_repo(flux_hub: FluxHub, hf_endpoint: str) -> None:
    client = HFClient()
    with pytest.raises(NotFoundError, match=r"has no file nope\.safetensors"):
        client.resolve(FLUX, None, ["nope.safetensors"])
    with pytest.raises(NotFoundError, match=r"matches '\*\.ckpt'"):
        client.resolve(FLUX, None, ["*.ckpt"])
    with pytest.raises(NotFoundError):
        client.resolve(FLUX, "no-such-branch", ["ae.safetensors"])
    with pytest.raises(NotFoundError, match="nobody/nothing"):
        client.resolve("nobody/nothing", None, ["x.safetensors"])


def test_download_verifies_lfs_sha(flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path) -> None:
    client = HFClient()
    f = client.resolve(ENC, None, ["clip_l.safetensors"]).files[0]
    staged = client.download(f, tmp_path / "stage", expected_sha256=None)
    assert staged.read_bytes() == flux_hub.files[ENC]["clip_l.safetensors"]
    assert tmp_path in staged.parents


def test_download_of_plain_git_file_verifies_blob_id(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    client = HFClient()
    f = client.resolve(FLUX, None, ["model_index.json"]).files[0]
    assert f.sha256 is None and f.blob_id
    staged = client.download(f, tmp_path / "stage", expected_sha256=None)
    assert staged.read_bytes() == flux_hub.files[FLUX]["model_index.json"]


def test_manifest_hash_disagreeing_with_hub_fails_before_download(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    client = HFClient()
    f = client.resolve(ENC, None, ["clip_l.safetensors"]).files[0]
    flux_hub.proxy.reset()
    with pytest.raises(IntegrityError, match=r"expects SHA256 0{64}"):
        client.download(f, tmp_path / "stage", expected_sha256="0" * 64)
    assert flux_hub.proxy.count("/resolve/") == 0
    assert not (tmp_path / "stage").exists()


def test_served_bytes_not_matching_the_trusted_hash_are_removed(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    client = HFClient()
    real = client.resolve(ENC, None, ["t5xxl_fp16.safetensors"]).files[0]
    # the Hub's oid for another file stands in for a corrupted transfer
    other = client.resolve(ENC, None, ["clip_l.safetensors"]).files[0]
    lying = type(real)(real.repo, real.path, real.commit, real.size, other.sha256, real.blob_id)
    with pytest.raises(IntegrityError, match=f"expected {other.sha256}"):
        client.download(lying, tmp_path / "stage", expected_sha256=None)
    assert not (tmp_path / "stage" / "t5xxl_fp16.safetensors").exists()


def test_gated_repo_without_access(flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path) -> None:
    client = HFClient()
    f = client.resolve("gated-org/gated-model", None, ["model.safetensors"]).files[0]
    with pytest.raises(AuthError) as info:
        client.download(f, tmp_path / "stage", expected_sha256=None)
    text = info.value.render()
    assert "gated-org/gated-model is gated" in text
    assert license_page("gated-org/gated-model") in text
    assert "https://huggingface.co/gated-org/gated-model" in text
    assert "HUGGINGFACE_TOKEN" in text


def test_gated_repo_with_a_token_that_has_access(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    try:
        client = HFClient(token=GATED_TOKEN)
        f = client.resolve("gated-org/gated-model", None, ["model.safetensors"]).files[0]
        staged = client.download(f, tmp_path / "stage", expected_sha256=None)
        assert staged.read_bytes() == flux_hub.files["gated-org/gated-model"]["model.safetensors"]
        # the token went to the endpoint as a bearer header, and is registered for redaction
        seen = [r.authorization for r in flux_hub.proxy.requests]
        assert f"Bearer {GATED_TOKEN}" in seen
        assert all(GATED_TOKEN not in r.path for r in flux_hub.proxy.requests)
        assert redact(f"x {GATED_TOKEN} y") == "x *** y"
    finally:
        forget_secrets()


def test_wrong_token_on_gated_repo(flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path) -> None:
    try:
        client = HFClient(token="hf_wrong_token_value")
        f = client.resolve("gated-org/gated-model", None, ["model.safetensors"]).files[0]
        with pytest.raises(AuthError, match="this token has no access") as info:
            client.download(f, tmp_path / "stage", expected_sha256=None)
        assert "hf_wrong_token_value" not in info.value.render()
    finally:
        forget_secrets()


def test_unreachable_endpoint_is_a_source_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SourceError, match="cannot reach"):
        HFClient().resolve(FLUX, None, ["ae.safetensors"])


def test_download_reports_progress_lines_for_logs(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    from provisioner.sources.progress import LogProgress

    lines: list[str] = []
    client = HFClient()
    f = client.resolve(FLUX, None, ["flux1-dev.safetensors"]).files[0]
    client.download(
        f, tmp_path / "stage", expected_sha256=None, progress=LogProgress(0.0, emit=lines.append)
    )
    label = f"hf:{FLUX}/flux1-dev.safetensors"
    assert lines[0].startswith(f"{label}: starting")
    assert any("100.0%" in line for line in lines)
    assert lines[-1].startswith(f"{label}: done")


def test_a_set_cancel_stops_the_transfer_and_returns_no_file(
    flux_hub: FluxHub, hf_endpoint: str, tmp_path: Path
) -> None:
    import threading

    from huggingface_hub import hf_hub_download

    from provisioner.sources.download import DownloadCancelled
    from provisioner.sources.huggingface import _accepts
    from provisioner.sources.progress import LogProgress

    if not _accepts(hf_hub_download, "tqdm_class"):
        pytest.skip("huggingface_hub < 1.0 drives no bar of ours: the file in flight finishes")
    lines: list[str] = []
    cancel = threading.Event()
    cancel.set()  # Ctrl-C arrived: the next block the hub reports ends the transfer
    client = HFClient()
    f = client.resolve(FLUX, None, ["flux1-dev.safetensors"]).files[0]
    with pytest.raises(DownloadCancelled, match=r"flux1-dev\.safetensors cancelled"):
        client.download(
            f,
            tmp_path / "stage",
            expected_sha256=None,
            progress=LogProgress(0.0, emit=lines.append),
            cancel=cancel,
        )
    assert not (tmp_path / "stage" / "flux1-dev.safetensors").exists()
    assert lines[-1].endswith("failed at 0 B")
