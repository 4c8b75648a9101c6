"""The torch guard: pins, merged image constraints, conflict detection (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.core.errors import GuardError
from provisioner.software import guard
from provisioner.software.pyenv import Dist, Distributions

ENV = {"sys_platform": "linux", "python_version": "3.11", "platform_machine": "x86_64"}


def dists(**versions: str) -> Distributions:
    return Distributions(
        {k.replace("_", "-"): Dist(k.replace("_", "-"), v, False) for k, v in versions.items()}, ENV
    )


IMAGE = dists(
    torch="2.13.0+cu128",
    torchvision="0.28.0",
    torchaudio="2.13.0",
    xformers="0.0.33",
    triton="3.5.0",
    nvidia_cudnn_cu12="9.10.2.21",
    numpy="2.1.0",
)


@pytest.mark.parametrize(
    ("name", "guarded"),
    [
        ("torch", True), ("Torch", True), ("torchvision", True), ("torchaudio", True),
        ("xformers", True), ("triton", True), ("pytorch-triton", True),
        ("nvidia-cublas-cu12", True), ("nvidia_cudnn_cu12", True), ("numpy", False),
        ("torchsde", False), ("pytorch", False),
    ],
)  # fmt: skip
def test_is_guarded(name: str, guarded: bool) -> None:
    assert guard.is_guarded(name) is guarded


def test_pins_every_guarded_dist_and_nothing_else() -> None:
    g = guard.build_guard(IMAGE, {})
    assert g.pins == {
        "torch": "2.13.0+cu128",
        "torchvision": "0.28.0",
        "torchaudio": "2.13.0",
        "xformers": "0.0.33",
        "triton": "3.5.0",
        "nvidia-cudnn-cu12": "9.10.2.21",
    }
    text = g.constraints_text()
    assert "torch==2.13.0+cu128\n" in text and "numpy" not in text


def test_image_constraints_are_merged(tmp_path: Path) -> None:
    pip_c = tmp_path / "pip-constraints.txt"
    pip_c.write_text("# NGC pins\nopencv-python==4.10.0.84\nnumpy<2.2  # ABI\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe")
    uv_c = tmp_path / "uv.txt"
    uv_c.write_text("pillow<12\n")
    env = {
        "PIP_CONSTRAINT": f"{pip_c} https://example.com/c.txt {tmp_path / 'gone.txt'}",
        "UV_CONSTRAINT": f"{uv_c} {pip_c} {binary}",
    }
    g = guard.build_guard(IMAGE, env)
    assert g.image_lines == ("opencv-python==4.10.0.84", "numpy<2.2", "pillow<12")
    assert g.remote_sources == ("https://example.com/c.txt",)
    assert any("gone.txt" in note for note in g.notes)
    assert any("binary.txt unreadable (not UTF-8 text)" in note for note in g.notes)
    text = g.constraints_text()
    assert text.index("torch==") < text.index("opencv-python==4.10.0.84")


@pytest.mark.parametrize(
    ("req", "conflicts"),
    [
        ("torch==1.0", True),
        ("torch<2", True),
        ("torch>=2.0", False),
        ("torch", False),
        ("torch==2.13.0", False),
        ("torchvision==0.20.1", True),
        ('torch==1.0; sys_platform == "win32"', False),
        ("nvidia-cudnn-cu12==8.9.2.26", True),
        ("torch @ https://download.pytorch.org/whl/torch-1.0.whl", True),
        ("numpy==1.26.4", False),
    ],
)
def test_direct_conflicts(req: str, conflicts: bool) -> None:
    g = guard.build_guard(IMAGE, {})
    if conflicts:
        with pytest.raises(GuardError) as info:
            guard.check_direct([req], g, ENV, "node X")
        err = info.value
        assert err.where == "node X" and "pinned to" in err.message and err.hint
    else:
        guard.check_direct([req], g, ENV, "node X")


def test_installer_output_names_the_guarded_package() -> None:
    g = guard.build_guard(IMAGE, {})
    out = "Because phx-oldtorch==1.0 depends on torch<2 and you require torch==2.13.0+cu128 ..."
    assert guard.guarded_in_output(out, g) == "torch"
    assert guard.guarded_in_output("ERROR: torchsde 0.2.6 not found", g) is None
    assert guard.guarded_in_output("nvidia_cudnn_cu12 wants", g) == "nvidia-cudnn-cu12"


def test_check_after_finds_moved_pins_and_contradicting_new_dists() -> None:
    g = guard.build_guard(IMAGE, {})
    before = IMAGE
    moved = Distributions({**IMAGE.dists, "torch": Dist("torch", "1.0", True)}, ENV)
    assert any("torch 2.13.0+cu128 was replaced" in p for p in guard.check_after(before, moved, g))
    shadow = Distributions({**IMAGE.dists, "torch": Dist("torch", "2.13.0+cu128", True)}, ENV)
    assert guard.check_after(before, shadow, g)  # same version, but now a copy in the venv
    new = Distributions({**IMAGE.dists, "old": Dist("old", "1.0", True, ("torch<2", "numpy"))}, ENV)
    problems = guard.check_after(before, new, g)
    assert len(problems) == 1 and problems[0].startswith("old 1.0 needs torch<2")
    fine = Distributions({**IMAGE.dists, "ok": Dist("ok", "1.0", True, ("torch>=2",))}, ENV)
    assert guard.check_after(before, fine, g) == []
