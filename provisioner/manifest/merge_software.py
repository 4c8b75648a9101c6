"""The desired custom nodes and Python packages from their merged entries: one per folder name or
package name, duplicates kept once, conflicting requests an error naming where they came from."""

from __future__ import annotations

from collections.abc import Sequence

from provisioner.core.errors import EnvError, ManifestError, PhoenixError
from provisioner.core.requirements import parse_requirement
from provisioner.manifest import items as parse
from provisioner.manifest.desired import DesiredNode, DesiredPackage
from provisioner.manifest.models import NodeSpec


def desired_nodes(specs: Sequence[NodeSpec], origins: Sequence[str]) -> list[DesiredNode]:
    """One node per folder name; the same repository twice is kept once, two sources for one
    folder are an error at the second origin."""
    out: dict[str, DesiredNode] = {}
    for spec, origin in zip(specs, origins, strict=True):
        try:  # every URL, named or not: credentials in it would be persisted by git
            item = parse.parse_node_item(spec.url, spec.name)
        except ValueError as exc:
            raise conflict(
                origin, str(exc), "write the URL as https://host/owner/repo[@ref]"
            ) from exc
        name = item.name
        node = DesiredNode(f"node:{name}", name, spec, origin)
        seen = out.get(name)
        if seen and _same_repo(seen.spec, spec):
            continue
        if seen:
            raise conflict(
                origin,
                f"node folder '{name}' is requested twice with different sources "
                f"({seen.origin}: {seen.spec.url}@{seen.spec.ref or 'default branch'})",
                "give one of them a distinct 'name:' or remove the duplicate",
            )
        out[name] = node
    return list(out.values())


def _same_repo(a: NodeSpec, b: NodeSpec) -> bool:
    def norm(url: str) -> str:
        return url.rstrip("/").removesuffix(".git").lower()

    return norm(a.url) == norm(b.url) and (a.ref == b.ref or b.ref is None)


def desired_packages(texts: Sequence[str], origins: Sequence[str]) -> list[DesiredPackage]:
    """One requirement per canonical package name; two different specifiers are an error."""
    from packaging.utils import canonicalize_name

    out: dict[str, DesiredPackage] = {}
    for text, origin in zip(texts, origins, strict=True):
        try:
            req = parse_requirement(text)
        except ValueError as exc:
            raise conflict(
                origin,
                str(exc),
                "e.g. 'numpy>=1.26,<2' or 'opencv-python-headless==4.10.0.84'",
            ) from None
        key = canonicalize_name(req.name)
        seen = out.get(key)
        if seen and parse_requirement(seen.requirement) == req:
            continue
        if seen:
            raise conflict(
                origin,
                f"{req.name} is requested twice with different specifiers "
                f"({seen.origin}: {seen.requirement!r}; here: {text!r})",
                "keep one requirement per package",
            )
        out[key] = DesiredPackage(f"pkg:{key}", text.strip(), origin)
    return list(out.values())


def conflict(origin: str, message: str, hint: str) -> PhoenixError:
    if origin.startswith("env:"):
        return EnvError(message, where=origin, hint=hint)
    return ManifestError(message, where=origin, hint=hint)
