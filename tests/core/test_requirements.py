"""Splitting and checking PEP 508 requirements (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement

from provisioner.core.requirements import check, parse_requirements_file, split_requirements


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("numpy>=1.26,<3 six", ["numpy>=1.26,<3", "six"]),
        ("numpy>=1.26,<3,six", ["numpy>=1.26,<3", "six"]),
        ("numpy >= 1.26, < 3, six", ["numpy>=1.26,<3", "six"]),
        ("a\nb==1\n\n  c~=2.1  ", ["a", "b==1", "c~=2.1"]),
        ("requests[socks,security]==2.31 six", ["requests[socks,security]==2.31", "six"]),
        ("pkg @ https://example.com/pkg-1.0-py3-none-any.whl, six",
         ["pkg @ https://example.com/pkg-1.0-py3-none-any.whl", "six"]),
        ('tomli; python_version < "3.11"', ['tomli; python_version < "3.11"']),
        ("# comment only\n", []),
        ("", []),
        ("torch==2.5.1+cu124", ["torch==2.5.1+cu124"]),
    ],
)  # fmt: skip
def test_split(text: str, expected: list[str]) -> None:
    assert split_requirements(text) == expected


@pytest.mark.parametrize(
    ("text", "bad"),
    [("numpy>=1.26,<3 si!x", "si!x"), ("numpy>=", "numpy>="), ("ok, ==1", "==1"), ("a,b c>", "c>")],
)
def test_split_names_the_bad_item(text: str, bad: str) -> None:
    with pytest.raises(ValueError) as info:
        split_requirements(text)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    ("req", "installed", "satisfied"),
    [
        ("torch", {"torch": "2.13.0"}, True),
        ("torch>=2", {"torch": "2.13.0+cu128"}, True),
        ("torch==2.13.0", {"torch": "2.13.0+cu128"}, True),
        ("torch<2", {"torch": "2.13.0"}, False),
        ("Pillow>=10", {"pillow": "10.4.0"}, True),
        ("zope.interface", {"zope-interface": "6.0"}, True),
        ("missing", {}, False),
        ('win-only; sys_platform == "win32"', {}, True),
        ("x @ https://e.com/x.whl", {"x": "1"}, True),
        ("nightly>=1.0", {"nightly": "1.1.dev3"}, True),
    ],
)
def test_check(req: str, installed: dict[str, str], satisfied: bool) -> None:
    env = {"sys_platform": "linux", "python_version": "3.11"}
    assert check(Requirement(req), installed, env).satisfied is satisfied


def test_requirements_file_keeps_options_opaque() -> None:
    parsed = parse_requirements_file(
        "# deps\ntorch\nnumpy>=1.25  # inline\n--extra-index-url https://x/simple\n"
        "-e git+https://github.com/o/r#egg=r\ngit+https://github.com/o/s.git\nsegment @ git+https://g/x\n"
        "opencv-python\\\n>=4\n"
    )
    assert parsed.requirements == (
        "torch",
        "numpy>=1.25",
        "segment @ git+https://g/x",
        "opencv-python >=4",
    )
    assert parsed.opaque == (
        "--extra-index-url https://x/simple",
        "-e git+https://github.com/o/r#egg=r",
        "git+https://github.com/o/s.git",
    )


_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,10}[A-Za-z0-9]", fullmatch=True)
_ops = st.sampled_from(["==", ">=", "<=", "<", ">", "!="])
_versions = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True)
_specs = st.lists(st.tuples(_ops, _versions), max_size=3).map(
    lambda pairs: ",".join(op + v for op, v in pairs)
)
_reqs = (
    st.tuples(_names, _specs)
    .map(lambda t: t[0] + t[1])
    .filter(lambda r: not r.endswith((".", "-", "_")))
)


@settings(max_examples=60, deadline=None)
@given(
    reqs=st.lists(_reqs, min_size=1, max_size=6),
    seps=st.lists(st.sampled_from([" ", ",", "\n", ", ", " ,\t"]), min_size=6, max_size=6),
)
def test_split_recovers_any_joined_list(reqs: list[str], seps: list[str]) -> None:
    text = "".join(r + sep for r, sep in zip(reqs, seps, strict=False))
    assert split_requirements(text) == reqs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("numpy>=1.26,<3 six", ["numpy>=1.26,<3", "six"]),
        ("numpy>=1.26,<2", ["numpy>=1.26,<2"]),
        ("a,b, c", ["a", "b", "c"]),
        ("a\nb\n\nc==1.0", ["a", "b", "c==1.0"]),
        ("requests[socks,security]>=2,<3", ["requests[socks,security]>=2,<3"]),
        ('six; python_version < "3.12"', ['six; python_version < "3.12"']),
        ("pkg>=1 , <2", ["pkg>=1,<2"]),
        ("", []),
    ],
)
def test_split_env_style_lists(text: str, expected: list[str]) -> None:
    assert split_requirements(text) == expected


@pytest.mark.parametrize("text", ["numpy>=>1", "==1.0", "pkg[", "a b>="])
def test_bad_env_style_items_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="PEP 508"):
        split_requirements(text)
