"""Desired states for tests: from manifest text through the real merge, the way `phoenix` does,
or straight from a manifest's nodes and packages (:func:`desired_of`, :func:`desired_nodes`).

Every manifest the model tests write gets a ``comfyui:`` section pointing at a tiny local
stand-in checkout that is already at its pinned commit, so the ComfyUI kind has nothing to do
(its own tests live in tests/actions/test_comfyui.py) and no test reaches for github.com.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from provisioner.manifest.desired import DesiredNode, DesiredPackage, DesiredState, Secrets
from provisioner.manifest.models import Manifest, NodeSpec
from tests.support.gitrepos import Repo


@functools.lru_cache(maxsize=1)
def comfyui_section() -> str:
    """A ``comfyui:`` manifest section for a local stand-in checkout at its pinned commit."""
    base = Path(tempfile.mkdtemp(prefix="phoenix-comfy-standin-"))
    origin = Repo(base / "origin", branch="master")
    commit = origin.commit({"main.py": "print('stand-in ComfyUI')\n"}, "stand-in")
    checkout = origin.clone(base / "ComfyUI")
    return f"comfyui:\n  repo: {origin.url}\n  ref: {commit}\n  path: {checkout}\n"


def with_comfyui(text: str) -> str:
    """``text`` plus the stand-in ``comfyui:`` section (unless it has its own)."""
    return text if "\ncomfyui:" in f"\n{text}" else text.rstrip("\n") + "\n" + comfyui_section()


def desired_from(
    tmp_path: Path, text: str, env: Mapping[str, str] | None = None, name: str = "manifest.yaml"
) -> tuple[DesiredState, Secrets, Path]:
    """Write ``text`` (+ the stand-in ComfyUI) as a manifest and load it through the real merge."""
    from provisioner.manifest.merge import load_desired

    path = tmp_path / name
    path.write_text(with_comfyui(text))
    desired, secrets = load_desired(str(path), dict(env or {}))
    return desired, secrets, path


FLUX_SET = """\
version: 1
models:
  - hf: black-forest-labs/FLUX.1-dev
"""


def desired_of(manifest: Manifest, origin: str = "manifest.yaml") -> DesiredState:
    """The desired state of a manifest's nodes and packages (the lead's merge does more)."""
    from provisioner.software.gitops import node_name

    nodes = []
    for spec in manifest.nodes:
        name = spec.name or node_name(spec.url)
        nodes.append(DesiredNode(f"node:{name}", name, spec, origin))
    packages = [DesiredPackage(f"pkg:{req}", req, origin) for req in manifest.packages]
    return DesiredState(manifest, nodes=tuple(nodes), packages=tuple(packages))


def desired_nodes(*specs: NodeSpec, packages: Sequence[str] = ()) -> DesiredState:
    """Desired state with these nodes and packages."""
    return desired_of(Manifest(nodes=list(specs), packages=list(packages)))
