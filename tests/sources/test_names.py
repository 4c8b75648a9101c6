"""Names from the network stay inside their folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.sources.names import (
    confined_path,
    filename_from_content_disposition,
    safe_filename,
)


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("flux1-dev.safetensors", "flux1-dev.safetensors"),
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\Windows\\system32\\evil.dll", "evil.dll"),
        ("C:\\models\\lora.safetensors", "lora.safetensors"),
        (".bashrc", "bashrc"),
        ("...hidden.pt", "hidden.pt"),
        ("na\x00me\x1b[31m.safetensors", "name[31m.safetensors"),
        ("name\u202egnp.exe", "namegnp.exe"),  # bidi override removed
        ("  spaced  .safetensors  ", "spaced  .safetensors"),
        ("trailing.dots...", "trailing.dots"),
        ("CON.safetensors", "_CON.safetensors"),
        ("lpt1", "_lpt1"),
        ('a<b>c:d"e|f?g*.pt', "a_b_c_d_e_f_g_.pt"),
        ("Ünïcödé-モデル.safetensors", "Ünïcödé-モデル.safetensors"),
        ("e\u0301.pt", "é.pt"),  # NFC
    ],
)
def test_safe_filename(raw: str, safe: str) -> None:
    assert safe_filename(raw) == safe


@pytest.mark.parametrize("raw", ["", "..", "../", "/", "\x00\x01", " . "])
def test_nothing_usable_is_an_error(raw: str) -> None:
    with pytest.raises(ValueError, match="no usable characters"):
        safe_filename(raw)


def test_long_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    name = safe_filename("é" * 300 + ".safetensors")
    assert len(name.encode()) <= 255 and name.endswith(".safetensors")


def test_confined_path_stays_in_the_folder(tmp_path: Path) -> None:
    assert confined_path(tmp_path, "../../x.pt") == tmp_path / "x.pt"
    (tmp_path / "link.pt").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match="would leave"):
        confined_path(tmp_path, "link.pt")


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="model.safetensors"', "model.safetensors"),
        ("attachment; filename=plain.pt", "plain.pt"),
        ('attachment; filename="../../etc/cron.d/x"', "x"),
        ("attachment; filename*=UTF-8''mod%C3%A8le.safetensors", "modèle.safetensors"),
        ("attachment; filename=\"a.pt\"; filename*=UTF-8''b%2F..%2Fc.pt", "c.pt"),
        ("inline", None),
        (None, None),
        ('attachment; filename=".."', None),
    ],
)
def test_content_disposition(header: str | None, name: str | None) -> None:
    assert filename_from_content_disposition(header) == name
