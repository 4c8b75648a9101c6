"""Civitai: every reference form, resolution against the loopback API, errors, and the
end-to-end path through the engine (hash from the API, token only on the API host)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from provisioner.core.errors import AuthError, IntegrityError, NotFoundError, SourceError
from provisioner.core.redact import redact
from provisioner.manifest.items import CivitaiRef, parse_civitai_ref
from provisioner.manifest.models import CivitaiModel
from provisioner.sources.civitai import (
    download_civitai_file,
    folder_for_type,
    resolve_civitai,
)
from provisioner.sources.download import download
from provisioner.sources.http import RetryPolicy, attach_bearer
from tests.support.civitai import LoopbackHub, Status

LORA = b"lora-bytes-" * 5000
LORA_V2 = b"lora-v2-bytes-" * 5000
FP8 = b"fp8-bytes-" * 3000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("618692", CivitaiRef(618692, None)),
        (618692, CivitaiRef(618692, None)),
        (" 618692@691639 ", CivitaiRef(618692, 691639)),
        ("urn:air:flux1:lora:civitai:618692@691639", CivitaiRef(618692, 691639)),
        ("urn:air:sdxl:checkpoint:civitai:827184", CivitaiRef(827184, None)),
        ("URN:AIR:SDXL:Checkpoint:Civitai:827184@2514310.safetensors", CivitaiRef(827184, 2514310)),
        ("https://civitai.com/models/618692", CivitaiRef(618692, None)),
        ("https://civitai.com/models/618692/flux-style-lora", CivitaiRef(618692, None)),
        (
            "https://civitai.com/models/618692/flux-style?modelVersionId=691639",
            CivitaiRef(618692, 691639),
        ),
        ("civitai.com/models/618692?modelVersionId=691639", CivitaiRef(618692, 691639)),
        ("https://www.civitai.com/models/1", CivitaiRef(1, None)),
        ("https://civitai.green/models/2?modelVersionId=3", CivitaiRef(2, 3)),
        ("https://civitai.com/api/download/models/691639", CivitaiRef(None, 691639)),
        (
            "https://civitai.com/api/download/models/691639?type=Model&format=SafeTensor",
            CivitaiRef(None, 691639),
        ),
    ],
)
def test_parse_accepts_every_form(text: str | int, expected: CivitaiRef) -> None:
    assert parse_civitai_ref(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty Civitai reference"),
        ("abc", "cannot read 'abc' as a Civitai reference; expected a model id"),
        ("12@", "cannot read '12@'"),
        ("0", "must be positive"),
        (-3, "must be positive"),
        ("urn:air:flux1:lora:huggingface:618692@1", "names source 'huggingface', not civitai"),
        ("urn:air:flux1:lora:civitai:abc@1", "ids must be numbers"),
        ("urn:air:flux1", "malformed AIR"),
        ("https://example.com/models/1", "expected a civitai.com URL, found host 'example.com'"),
        ("https://civitai.com/models/abc", "model id in"),
        ("https://civitai.com/models/1?modelVersionId=x", "modelVersionId in"),
        ("https://civitai.com/user/someone", "unrecognised civitai.com URL"),
        ("https://civitai.com/api/download/models/x", "version id in"),
    ],
)
def test_parse_rejects_with_a_precise_message(text: str | int, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_civitai_ref(text)


def test_ref_key_matches_desired_model_ids() -> None:
    assert CivitaiRef(1, None).key == "1"
    assert CivitaiRef(1, 2).key == "1@2"
    assert CivitaiRef(None, 2).key == "@2"


@pytest.mark.parametrize(
    ("api_type", "folder"),
    [
        ("Checkpoint", "checkpoints"),
        ("LORA", "loras"),
        ("LoCon", "loras"),
        ("DoRA", "loras"),
        ("VAE", "vae"),
        ("TextualInversion", "embeddings"),
        ("Controlnet", "controlnet"),
        ("Upscaler", "upscale_models"),
        ("Hypernetwork", "hypernetworks"),
        ("MotionModule", "animatediff_models"),
        ("Poses", None),
        ("Workflows", None),
        (None, None),
    ],
)
def test_type_to_folder(api_type: str | None, folder: str | None) -> None:
    assert folder_for_type(api_type) == folder


@pytest.fixture
def catalogue(hub: LoopbackHub) -> LoopbackHub:
    """Model 100 (LORA): v1001 published, v1002 published newest, v1003 early access newest."""
    hub.add_model(
        100,
        name="Flux Style",
        type="LORA",
        versions=[
            {
                "id": 1003,
                "availability": "EarlyAccess",
                "earlyAccessEndsAt": "2099-01-01",
                "files": [{"name": "ea.safetensors", "data": b"early"}],
            },
            {
                "id": 1002,
                "name": "v2",
                "files": [
                    {
                        "name": "style_v2_fp8.safetensors",
                        "data": FP8,
                        "primary": False,
                        "metadata": {"format": "SafeTensor", "fp": "fp8", "size": "pruned"},
                    },
                    {"name": "style_v2.safetensors", "data": LORA_V2, "primary": True},
                    {
                        "name": "training.zip",
                        "data": b"zip",
                        "type": "Training Data",
                        "metadata": {"format": "Other"},
                    },
                ],
            },
            {"id": 1001, "name": "v1", "files": [{"name": "style_v1.safetensors", "data": LORA}]},
        ],
    )
    return hub


def resolve(
    hub: LoopbackHub, session: requests.Session, token: str | None = None, **entry: object
) -> object:
    return resolve_civitai(
        CivitaiModel.model_validate(entry),
        session=session,
        api_base=hub.api_base,
        token=token,
        retry=RetryPolicy(attempts=2, backoff_base=0.01),
    )


def test_model_id_resolves_to_latest_published_version_and_primary_file(
    catalogue: LoopbackHub, session: requests.Session
) -> None:
    got = resolve(catalogue, session, civitai=100)

    assert (got.model_id, got.version_id, got.name) == (100, 1002, "style_v2.safetensors")
    assert got.sha256 == sha(LORA_V2)  # upper-case in the API, lower-case here
    assert (got.folder, got.model_name, got.version_name) == ("loras", "Flux Style", "v2")
    assert got.download_url == f"{catalogue.api_base}/api/download/models/1002?fileIndex=1"
    assert got.size == len(LORA_V2)


@pytest.mark.parametrize(
    "ref",
    [
        "100@1001",
        "urn:air:flux1:lora:civitai:100@1001",
        "https://civitai.com/models/100/flux-style?modelVersionId=1001",
        "https://civitai.com/api/download/models/1001",
    ],
)
def test_pinned_forms_resolve_to_that_version(
    catalogue: LoopbackHub, session: requests.Session, ref: str
) -> None:
    got = resolve(catalogue, session, civitai=ref)
    assert (got.model_id, got.version_id, got.file_id) == (100, 1001, 10010)
    assert got.sha256 == sha(LORA)


def test_url_form_without_version_is_the_latest(
    catalogue: LoopbackHub, session: requests.Session
) -> None:
    assert resolve(catalogue, session, civitai="https://civitai.com/models/100").version_id == 1002


def test_format_fp_size_narrow_the_file(catalogue: LoopbackHub, session: requests.Session) -> None:
    got = resolve(catalogue, session, civitai="100@1002", fp="fp8", size="pruned")
    assert got.name == "style_v2_fp8.safetensors" and got.sha256 == sha(FP8)


def test_no_file_matching_the_narrowing_lists_what_is_offered(
    catalogue: LoopbackHub, session: requests.Session
) -> None:
    with pytest.raises(SourceError, match="no file of Civitai version 1002 matches fp=nf4") as info:
        resolve(catalogue, session, civitai="100@1002", fp="nf4")
    assert "style_v2_fp8.safetensors (SafeTensor/fp8/pruned)" in info.value.render()


def test_early_access_only_model_says_so(hub: LoopbackHub, session: requests.Session) -> None:
    hub.add_model(
        7,
        name="Soon",
        type="Checkpoint",
        versions=[
            {
                "id": 70,
                "availability": "EarlyAccess",
                "earlyAccessEndsAt": "2099-01-01",
                "files": [{"name": "soon.safetensors", "data": b"x"}],
            }
        ],
    )
    with pytest.raises(SourceError, match=r"no published version with files; skipped 70 \(early"):
        resolve(hub, session, civitai=7)


def test_pinned_early_access_version_without_token_says_so(
    catalogue: LoopbackHub, session: requests.Session
) -> None:
    with pytest.raises(AuthError, match="version 1003 of civitai:100@1003 is in early access") as e:
        resolve(catalogue, session, civitai="100@1003")
    assert "CIVITAI_TOKEN" in e.value.render()


def test_version_of_another_model_is_refused(
    catalogue: LoopbackHub, session: requests.Session
) -> None:
    with pytest.raises(NotFoundError, match="version 1001 belongs to model 100, not 5"):
        resolve(catalogue, session, civitai="5@1001")


def test_404_is_model_or_version_not_found(hub: LoopbackHub, session: requests.Session) -> None:
    with pytest.raises(NotFoundError, match="model or version not found: civitai:42"):
        resolve(hub, session, civitai=42)
    with pytest.raises(NotFoundError, match="civitai:@43"):
        resolve(hub, session, civitai="https://civitai.com/api/download/models/43")


def test_401_without_token_says_set_civitai_token(
    catalogue: LoopbackHub, session: requests.Session
) -> None:
    catalogue.required_token = "tok-abcdef"
    with pytest.raises(AuthError, match="refused access to civitai:100 ") as info:
        resolve(catalogue, session, civitai=100)
    assert "set CIVITAI_TOKEN" in info.value.render()
    with pytest.raises(AuthError) as wrong:
        resolve(catalogue, session, token="tok-wrong", civitai=100)
    assert "was refused" in wrong.value.render()


def test_token_is_a_header_for_the_api_host_only(
    catalogue: LoopbackHub, session: requests.Session
) -> None:
    catalogue.required_token = "tok-abcdef"
    got = resolve(catalogue, session, token="tok-abcdef", civitai=100)
    assert got.version_id == 1002
    (api,) = catalogue.requests_to("/api/v1/")
    assert api.headers["Authorization"] == "Bearer tok-abcdef"
    assert "tok-abcdef" not in api.path
    assert redact("token tok-abcdef leaked") == "token *** leaked"


def test_api_5xx_is_retried(catalogue: LoopbackHub, session: requests.Session) -> None:
    catalogue.api_faults["/api/v1/models/100"] = [Status(503)]
    assert resolve(catalogue, session, civitai=100).version_id == 1002
    assert [r.status for r in catalogue.requests_to("/api/v1/")] == [503, 200]


def test_manifest_sha_must_agree_with_the_api(
    catalogue: LoopbackHub, session: requests.Session
) -> None:
    assert resolve(catalogue, session, civitai="100@1001", sha256=sha(LORA).upper()).sha256 == sha(
        LORA
    )
    with pytest.raises(SourceError, match="differs from Civitai's"):
        resolve(catalogue, session, civitai="100@1001", sha256="ab" * 32)


def test_api_file_name_is_confined(hub: LoopbackHub, session: requests.Session) -> None:
    hub.add_model(
        9,
        name="Evil",
        type="VAE",
        versions=[{"id": 90, "files": [{"name": "../../etc/passwd", "data": b"x"}]}],
    )
    assert resolve(hub, session, civitai=9).name == "passwd"


def test_missing_hash_refuses_unverified_download(
    hub: LoopbackHub, session: requests.Session
) -> None:
    hub.add_model(
        8,
        name="NoHash",
        type="LORA",
        versions=[{"id": 80, "files": [{"name": "n.safetensors", "data": b"x"}]}],
    )
    _, body = hub.api["/api/v1/models/8"]
    body["modelVersions"][0]["files"][0]["hashes"] = {}
    with pytest.raises(SourceError, match="gives no SHA256"):
        resolve(hub, session, civitai=8)


def test_end_to_end_verified_download_through_the_cdn_redirect(
    catalogue: LoopbackHub, session: requests.Session, root: Path, staging: Path
) -> None:
    catalogue.required_token = "tok-e2e-secret"
    attach_bearer(session, "tok-e2e-secret", catalogue.api_base)
    got = resolve(catalogue, session, token="tok-e2e-secret", civitai=100)
    assert got.folder is not None
    dest = root / "models" / got.folder / got.name

    result = download(
        got.download_url,
        dest,
        staging=staging,
        expected_sha256=got.sha256,
        session=session,
        expected_size=got.size,
        label="civitai:100",
    )

    assert result.sha256 == sha(LORA_V2) and dest.read_bytes() == LORA_V2
    (cdn,) = catalogue.requests_to("/files/", server="cdn")
    assert "Authorization" not in cdn.headers
    for record in catalogue.requests_to("/"):
        assert "tok-e2e-secret" not in record.path


def test_bytes_not_matching_the_api_hash_fail_and_place_nothing(
    hub: LoopbackHub, session: requests.Session, root: Path, staging: Path
) -> None:
    hub.add_model(
        11,
        name="Tampered",
        type="Checkpoint",
        versions=[
            {"id": 110, "files": [{"name": "t.safetensors", "data": LORA, "served": LORA_V2}]}
        ],
    )
    got = resolve(hub, session, civitai=11)
    dest = root / "models" / "checkpoints" / got.name

    with pytest.raises(IntegrityError) as info:
        download(
            got.download_url,
            dest,
            staging=staging,
            expected_sha256=got.sha256,
            session=session,
            label=f"civitai:{got.model_id}@{got.version_id}",
        )

    message = info.value.message
    assert "civitai:11@110" in message and sha(LORA) in message and sha(LORA_V2) in message
    assert list((root / "models").rglob("*")) == []
    assert list(staging.iterdir()) == []


def test_download_route_honours_429_on_the_api(
    catalogue: LoopbackHub, session: requests.Session, root: Path, staging: Path
) -> None:
    got = resolve(catalogue, session, civitai="100@1001")
    served = catalogue.files[catalogue.redirects[1001 * 100]]
    served.faults.append(Status(429, {"Retry-After": "0"}))
    result = download(
        got.download_url, root / "x", staging=staging, expected_sha256=got.sha256, session=session
    )
    assert result.sha256 == sha(LORA)


def test_download_civitai_file_scopes_the_token_and_names_the_model(
    catalogue: LoopbackHub, session: requests.Session, root: Path, staging: Path
) -> None:
    got = resolve(catalogue, session, civitai="100@1001")
    catalogue.required_token = "tok-dl-secret"
    dest = root / "models" / "loras" / got.name

    with pytest.raises(
        AuthError, match=r"refused the download of civitai:100@1001 \(Flux Style v1\)"
    ) as info:
        download_civitai_file(
            got, dest, session=session, staging=staging, api_base=catalogue.api_base, token=None
        )
    assert "set CIVITAI_TOKEN" in info.value.render()
    catalogue.reset()

    result = download_civitai_file(
        got,
        dest,
        session=session,
        staging=staging,
        api_base=catalogue.api_base,
        token="tok-dl-secret",
    )

    assert result.sha256 == sha(LORA) and dest.read_bytes() == LORA
    api = catalogue.requests_to("/api/download/", server="api")
    cdn = catalogue.requests_to("/files/", server="cdn")
    assert [r.headers.get("Authorization") for r in api] == ["Bearer tok-dl-secret"]
    assert [r.headers.get("Authorization") for r in cdn] == [None]
    assert session.auth is None  # the shared session was not changed


def test_a_set_cancel_stops_a_civitai_transfer_before_anything_is_placed(
    catalogue: LoopbackHub, session: requests.Session, root: Path, staging: Path
) -> None:
    import threading

    from provisioner.sources.download import DownloadCancelled

    got = resolve(catalogue, session, civitai="100@1001")
    dest = root / "models" / "loras" / got.name
    cancel = threading.Event()
    cancel.set()  # Ctrl-C in a parallel apply sets it; the engine stops at its next block
    with pytest.raises(DownloadCancelled, match=r"civitai:100@1001 cancelled"):
        download_civitai_file(
            got,
            dest,
            session=session,
            staging=staging,
            api_base=catalogue.api_base,
            token=None,
            cancel=cancel,
        )
    assert not dest.exists()
