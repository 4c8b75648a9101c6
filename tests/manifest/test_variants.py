"""Variant selection (pure table) and the issue's "done when" plans for FLUX.2-dev."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.core.errors import EnvError
from provisioner.manifest.merge import merge
from provisioner.manifest.profiles import load_profile_file, load_profiles
from provisioner.manifest.variants import (
    NoFit,
    VramFact,
    choose_variant,
    launch_weights,
    vram_from_env,
)
from tests.support.cli import clean_env, run_phoenix

FLUX2 = "black-forest-labs/FLUX.2-dev"
KREA = "black-forest-labs/FLUX.1-Krea-dev"


def _vram(gib: float | None) -> VramFact | None:
    return None if gib is None else VramFact(gib, "test")


TABLE = [
    # repo, vram GiB, requested, expected variant
    (FLUX2, 80, "auto", "bf16"),
    (FLUX2, 64, None, "bf16"),
    (FLUX2, 63.9, "auto", "fp8"),
    (FLUX2, 32, "auto", "fp8"),
    (FLUX2, 31.5, "auto", "gguf-q5"),
    (FLUX2, 24, "auto", "gguf-q4"),
    (FLUX2, None, "auto", "fp8"),  # unknown VRAM: chosen for a 32 GiB card, and said so
    (FLUX2, 80, "gguf-q4", "gguf-q4"),
    (FLUX2, None, "bf16", "bf16"),
    (KREA, 32, "auto", "bf16"),
    (KREA, 16, "auto", "fp8"),
    (KREA, 10, "auto", "gguf-q4"),
]


@pytest.mark.parametrize(("repo", "gib", "requested", "expected"), TABLE)
def test_choose_variant_table(
    repo: str, gib: float | None, requested: str | None, expected: str
) -> None:
    name, reason = choose_variant(load_profiles()[repo], _vram(gib), requested)
    assert name == expected
    assert expected in reason


def test_reason_names_what_did_not_fit() -> None:
    _, reason = choose_variant(load_profiles()[FLUX2], VramFact(32, "--vram-gib"))
    assert reason == "32 GiB (--vram-gib): fp8; bf16 needs 64 GiB"


@pytest.mark.parametrize(
    ("gib", "requested", "message"),
    [
        (8, "auto", "no variant fits: test has 8 GiB, and the smallest, gguf-q4, needs 24 GiB"),
        (32, "bf16", "variant bf16 needs 64 GiB, and test has 32 GiB; use variant: auto or fp8"),
        (32, "nvfp4", "variant 'nvfp4' is not one of auto, bf16, fp8, gguf-q5, gguf-q4"),
    ],
)
def test_misfits_are_errors(gib: float, requested: str, message: str) -> None:
    with pytest.raises(NoFit, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        choose_variant(load_profiles()[FLUX2], VramFact(gib, "test"), requested)


def test_profiles_file_is_consistent() -> None:
    shipped = load_profile_file()
    for repo, profile in shipped.profiles.items():
        for name, variant in profile.variants.items():
            kinds = {f.type for f in variant.files}
            assert "diffusion_models" in kinds, (repo, name)
            assert (variant.weights == "gguf") == ("gguf" in variant.nodes), (repo, name)
            gguf = [f for f in variant.files if f.path.endswith(".gguf")]
            assert bool(gguf) == (variant.weights == "gguf"), (repo, name)
        needs = [v.vram_gib for v in profile.variants.values()]
        assert needs == sorted(needs, reverse=True), f"{repo}: variants not best-first"
    assert shipped.nodes["gguf"].ref and len(shipped.nodes["gguf"].ref) == 40


def test_env_vram_is_checked() -> None:
    assert vram_from_env({"PHOENIX_VRAM_GIB": "23.5"}) == VramFact(23.5, "env:PHOENIX_VRAM_GIB")
    assert vram_from_env({"PHOENIX_VRAM_GIB": " "}) is None
    for bad in ("lots", "-4", "0", "nan"):
        with pytest.raises(EnvError) as info:
            vram_from_env({"PHOENIX_VRAM_GIB": bad})
        assert info.value.render().startswith("env:PHOENIX_VRAM_GIB: expected a positive")


def test_gguf_variant_brings_its_pinned_node_and_flags_follow() -> None:
    env = {"HF_REPOS_TO_DOWNLOAD": FLUX2, "PHOENIX_VRAM_GIB": "24"}
    desired = merge(None, None, env)
    (choice,) = desired.variants
    assert choice.variant == "gguf-q4" and choice.weights == "gguf"
    node = {n.name: n for n in desired.nodes}["ComfyUI-GGUF"]
    assert node.spec.ref == load_profile_file().nodes["gguf"].ref
    assert node.origin == "env:HF_REPOS_TO_DOWNLOAD[0] (variant gguf-q4)"
    assert launch_weights(desired.variants) == "gguf"
    fp8 = merge(None, None, {"HF_REPOS_TO_DOWNLOAD": FLUX2, "PHOENIX_VRAM_GIB": "32"})
    assert not [n for n in fp8.nodes if n.name == "ComfyUI-GGUF"]
    assert launch_weights(fp8.variants) == "fp8"


def test_variant_key_in_a_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(f"version: 1\nmodels:\n  - hf: {FLUX2}\n    variant: bf16\n")
    result = run_phoenix(
        "plan", "--manifest", str(manifest), "--root", str(tmp_path / "ws"), "--vram-gib", "32"
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"phoenix: error: {manifest}:3:5: {FLUX2}: variant bf16")
    assert "hint:" in result.stderr and "Traceback" not in result.stderr


def _plan(tmp_path: Path, *extra: str) -> dict[str, object]:
    env = clean_env(HF_REPOS_TO_DOWNLOAD=FLUX2)
    result = run_phoenix(
        "plan", "--format", "json", "--root", str(tmp_path / "ws"), *extra, env=env
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _models(doc: dict[str, object]) -> dict[str, dict[str, object]]:
    items = doc["items"]
    assert isinstance(items, list)
    return {str(i["dest"]).split("/")[1]: i for i in items if i["kind"] == "model"}


def test_done_when_32_gib_lists_model_encoder_vae_with_sizes(tmp_path: Path) -> None:
    doc = _plan(tmp_path, "--vram-gib", "32")
    models = _models(doc)
    assert set(models) == {"diffusion_models", "text_encoders", "vae"}
    assert all(isinstance(m["size"], int) and m["size"] > 0 for m in models.values())
    assert {m["variant"] for m in models.values()} == {"fp8"}
    variants = doc["variants"]
    assert isinstance(variants, list) and len(variants) == 1
    assert variants[0]["variant"] == "fp8" and "bf16 needs 64 GiB" in variants[0]["reason"]


def test_done_when_80_gib_is_a_larger_variant(tmp_path: Path) -> None:
    big = _models(_plan(tmp_path, "--vram-gib", "80"))
    small = _models(_plan(tmp_path, "--vram-gib", "32"))
    assert {m["variant"] for m in big.values()} == {"bf16"}
    dm = "diffusion_models"
    assert int(big[dm]["size"]) > int(small[dm]["size"])  # type: ignore[call-overload]


def test_done_when_8_gib_is_a_clear_error_before_any_download(tmp_path: Path) -> None:
    env = clean_env(HF_REPOS_TO_DOWNLOAD=FLUX2, PHOENIX_VRAM_GIB="8")
    result = run_phoenix("plan", "--root", str(tmp_path / "ws"), env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"phoenix: error: env:HF_REPOS_TO_DOWNLOAD[0]: {FLUX2}: no variant fits: "
        "env:PHOENIX_VRAM_GIB has 8 GiB, and the smallest, gguf-q4, needs 24 GiB"
    )
    assert not (tmp_path / "ws").exists()


def test_flux1_dev_default_is_unchanged(tmp_path: Path) -> None:
    result = run_phoenix("plan", "--format", "json", "--root", str(tmp_path / "ws"))
    doc = json.loads(result.stdout)
    dests = sorted(i["dest"] for i in doc["items"] if i["kind"] == "model")
    assert dests == [
        "models/diffusion_models/flux1-dev.safetensors",
        "models/text_encoders/clip_l.safetensors",
        "models/text_encoders/t5xxl_fp16.safetensors",
        "models/vae/ae.safetensors",
    ]
    assert doc["variants"] == []


def test_phoenix_run_chooses_variants_from_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """``phoenix run``'s loader probes the GPU: an 80 GiB card gets bf16, the env var wins."""
    from provisioner.runtime import gpu as gpu_module
    from provisioner.runtime.run_inputs import default_load

    card = gpu_module.GpuFacts("NVIDIA A100-SXM4-80GB", (8, 0), 81920 * 1024**2, "535", "12.2")
    monkeypatch.setattr(gpu_module, "read_gpu_facts", lambda: card)
    desired, _ = default_load(None, {"HF_REPOS_TO_DOWNLOAD": FLUX2})
    (choice,) = desired.variants
    assert choice.variant == "bf16" and "A100" in choice.reason
    desired, _ = default_load(None, {"HF_REPOS_TO_DOWNLOAD": FLUX2, "PHOENIX_VRAM_GIB": "32"})
    assert desired.variants[0].variant == "fp8"


def test_phoenix_run_without_pynvml_states_its_assumption(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from provisioner.runtime.run_inputs import default_load

    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    desired, _ = default_load(None, {"HF_REPOS_TO_DOWNLOAD": FLUX2})
    (choice,) = desired.variants
    assert choice.reason.startswith("VRAM not known (no --vram-gib, PHOENIX_VRAM_GIB or GPU)")
    assert "32 GiB GPU" in choice.reason and choice.variant == "fp8"
    desired, _ = default_load(None, {"HF_REPOS_TO_DOWNLOAD": FLUX2, "PHOENIX_VRAM_GIB": "24"})
    assert desired.variants[0].variant == "gguf-q4"
