"""The persistent Python environment on the workspace root, and installs into it.

``.phoenix/venv`` is created with ``--system-site-packages`` over the image's Python, so the
image's torch is used as is while packages installed for nodes persist on the volume. When the
image's Python is itself a virtual environment, its site-packages are chained in with a ``.pth``
file (a venv's ``--system-site-packages`` would skip them). Installs use ``uv pip`` when uv is on
PATH, else pip, and always go through :mod:`provisioner.software.guard`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import shutil
import site
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.core.errors import InstallError
from provisioner.core.fsio import atomic_write_text, staging_dir
from provisioner.core.layout import Layout
from provisioner.software import proc

VENV_TIMEOUT = 300.0
FACTS_TIMEOUT = 60.0
INSTALL_TIMEOUT = 1800.0
BASE_PTH = "_phoenix_base.pth"
_VENV_LOCK = threading.Lock()

# Runs inside the target interpreter (which may lack `packaging`): stdlib only.
# ``facts(entries, requires)`` reads the distributions on ``entries`` (that interpreter's
# ``sys.path``). A ``.dist-info`` folder's name gives name and version; its METADATA is read
# only for the ``Requires-Dist`` of the environment's own distributions, when ``requires`` asks
# (the guard's after-install check), and for names the folder cannot give.
_FACTS_CODE = r"""
import os, platform, re, sys

def facts(entries, requires):
  prefix = os.path.realpath(sys.prefix)
  dists = {}

  def canon(name):
      return re.sub(r"[-_.]+", "-", name).lower()

  def headers(path, want_requires):
      name = version = None
      requires = []
      for fname in ("METADATA", "PKG-INFO"):
          try:
              fh = open(os.path.join(path, fname), encoding="utf-8", errors="replace")
          except OSError:
              continue
          with fh:
              for line in fh:
                  if line in ("\n", "\r\n"):
                      break
                  key, _, value = line.partition(":")
                  if key == "Name" and name is None:
                      name = value.strip()
                  elif key == "Version" and version is None:
                      version = value.strip()
                  elif key == "Requires-Dist" and want_requires:
                      requires.append(value.strip())
          break
      return name, version, requires

  for entry in entries:
      try:
          names = sorted(os.listdir(entry or "."))
      except OSError:
          continue
      in_env = os.path.realpath(entry or ".").startswith(prefix + os.sep)
      for n in names:
          if not n.endswith((".dist-info", ".egg-info")):
              continue
          path = os.path.join(entry, n)
          stem = n.rsplit(".", 1)[0]
          name, _, version = stem.partition("-")
          want = in_env and requires
          fast = n.endswith(".dist-info") and version and "-" not in version and not want
          if not fast:
              name2, version2, needs = headers(path, want)
              if not name2 or not version2:
                  continue
              name, version = name2, version2
          else:
              needs = []
          key = canon(name)
          if key in dists:
              continue  # first on sys.path wins, as at import time
          dists[key] = {"name": name, "version": version, "in_env": in_env, "requires": needs}
  iver = "{0.major}.{0.minor}.{0.micro}".format(sys.implementation.version)
  env = {"implementation_name": sys.implementation.name, "implementation_version": iver,
         "os_name": os.name, "platform_machine": platform.machine(),
         "platform_release": platform.release(), "platform_system": platform.system(),
         "platform_version": platform.version(),
         "python_full_version": platform.python_version(),
         "platform_python_implementation": platform.python_implementation(),
         "python_version": ".".join(platform.python_version_tuple()[:2]),
         "sys_platform": sys.platform}
  site = [p for p in entries if p.endswith(("site-packages", "dist-packages"))]
  return {"dists": dists, "env": env, "is_venv": sys.prefix != sys.base_prefix, "site": site}
"""


@dataclass(frozen=True)
class Dist:
    """One installed distribution as the interpreter sees it."""

    name: str
    version: str
    #: installed inside this environment's own prefix (not inherited from the base)
    in_env: bool
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Distributions:
    """What an interpreter has installed (canonical name → :class:`Dist`) and its marker env."""

    dists: dict[str, Dist] = field(default_factory=dict)
    marker_env: dict[str, str] = field(default_factory=dict)
    is_venv: bool = False
    site: tuple[str, ...] = ()

    def versions(self) -> dict[str, str]:
        """Canonical name → version."""
        return {key: d.version for key, d in self.dists.items()}


def base_python() -> Path:
    """The image's interpreter: ``$PHOENIX_BASE_PYTHON``, else the one running Phoenix."""
    override = os.environ.get("PHOENIX_BASE_PYTHON")
    return Path(override) if override else Path(sys.executable)


def venv_python(layout: Layout) -> Path:
    """The interpreter of the workspace environment (may not exist yet)."""
    return layout.venv / "bin" / "python"


def target_python(layout: Layout) -> Path:
    """The venv's interpreter when it exists, else the base (what the venv will see)."""
    py = venv_python(layout)
    return py if py.exists() else base_python()


def _facts_argv(python: Path, requires: bool = False) -> list[str]:
    script = f"{_FACTS_CODE}\nimport json\nprint(json.dumps(facts(sys.path, {requires!r})))\n"
    return [str(python), "-I", "-B", "-c", script]


#: children started by :func:`prefetch_distributions` in this context, not yet consumed
_PREFETCHED: contextvars.ContextVar[dict[str, proc.Pending] | None] = contextvars.ContextVar(
    "phoenix_prefetched_facts", default=None
)
#: the facts already read inside a :func:`shared_facts` block (None outside one)
_SHARED: contextvars.ContextVar[dict[tuple[str, bool], Distributions] | None] = (
    contextvars.ContextVar("phoenix_shared_facts", default=None)
)


@contextlib.contextmanager
def prefetch_distributions(python: Path) -> Iterator[None]:
    """Start reading ``python``'s distributions now, in a child, while the caller does other work.

    The next :func:`installed_distributions` for the same interpreter inside the block (same
    thread/context) takes the child's answer instead of starting one; the child is ended on exit
    if nobody asked. The child and its answer are exactly those of
    :func:`installed_distributions`. Only for read-only commands: nothing may install inside.
    """
    if _in_process_entries(python) is not None:
        yield  # read in-process when asked: nothing to start
        return
    pending = proc.start(_facts_argv(python), timeout=FACTS_TIMEOUT)
    token = _PREFETCHED.set({str(python): pending})
    try:
        yield
    finally:
        _PREFETCHED.reset(token)
        pending.cancel()


@contextlib.contextmanager
def shared_facts() -> Iterator[None]:
    """Inside the block, each interpreter's distributions are read once and shared.

    For read-only passes (building a plan) where several kinds ask about the same interpreter;
    nothing installs inside such a block, so the answer cannot go stale.
    """
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def installed_distributions(python: Path, *, requires: bool = False) -> Distributions:
    """Read the distributions ``python`` can import (a read-only fact; one short child).

    With ``requires`` the environment's own distributions carry their ``Requires-Dist`` (what
    the guard checks after an install); without, ``Dist.requires`` is empty and most
    distributions are known from their folder names alone.
    """
    shared = _SHARED.get()
    if shared is not None:
        for key in ((str(python), True), (str(python), requires)):
            if key in shared:
                return shared[key]
    dists = _read_distributions(python, requires)
    if shared is not None:
        shared[(str(python), requires)] = dists
    return dists


def _read_distributions(python: Path, requires: bool) -> Distributions:
    entries = _in_process_entries(python)
    if entries is not None:  # the running interpreter: the same script, without a child
        namespace: dict[str, Any] = {}
        exec(compile(_FACTS_CODE, "<phoenix-facts>", "exec"), namespace)
        return _distributions(json.loads(json.dumps(namespace["facts"](entries, requires))))
    prefetched = _PREFETCHED.get()
    pending = None
    if prefetched is not None and not requires:
        pending = prefetched.pop(str(python), None)
    try:
        if pending is not None:
            result = pending.result()
        else:
            result = proc.run(_facts_argv(python, requires), timeout=FACTS_TIMEOUT)
    except proc.Timeout as exc:
        raise InstallError(f"reading installed packages: {exc}", where=str(python)) from exc
    if not result.ok:
        raise InstallError(
            f"cannot read installed packages: {result.tail(4)}",
            where=str(python),
            hint="check that the image's Python works",
        )
    return _distributions(json.loads(result.output.strip().splitlines()[-1]))


def _distributions(data: dict[str, Any]) -> Distributions:
    dists = {
        key: Dist(v["name"], v["version"], bool(v["in_env"]), tuple(v["requires"]))
        for key, v in data["dists"].items()
    }
    return Distributions(dists, dict(data["env"]), bool(data["is_venv"]), tuple(data["site"]))


def _in_process_entries(python: Path) -> list[str] | None:
    """The isolated ``sys.path`` when ``python`` is the running interpreter, else None."""
    return _isolated_path() if str(python) == sys.executable else None


def _isolated_path() -> list[str] | None:
    """This interpreter's ``sys.path`` as ``python -I`` would start with, or None if unsure.

    Isolated mode leaves out the script's folder (or cwd), ``PYTHONPATH`` and the user site;
    the rest (stdlib, site-packages and what their ``.pth`` files add) is the same. Those
    entries come first at start-up, so the standard library's zip entry must sit right after
    them; when it does not (``sys.path`` was changed, ``PYTHONHOME`` is set, the user site is
    on the path), the caller asks a child instead.
    """
    if os.environ.get("PYTHONHOME") and not sys.flags.ignore_environment:
        return None
    lead = 0 if (sys.flags.safe_path or sys.flags.isolated) else 1
    if not sys.flags.ignore_environment and os.environ.get("PYTHONPATH"):
        lead += len([p for p in os.environ["PYTHONPATH"].split(os.pathsep) if p])
    stdlib_zip = "python{}{}.zip".format(*sys.version_info[:2])
    if len(sys.path) <= lead or os.path.basename(sys.path[lead]) != stdlib_zip:
        return None
    entries = sys.path[lead:]
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user_site and user_site in entries:
        return None
    return entries


def ensure_venv(layout: Layout, base: Path | None = None) -> Path:
    """Create ``.phoenix/venv`` over the base interpreter unless it works already; its python.

    Built in staging and renamed into place, so a failure leaves no half environment.
    """
    py = venv_python(layout)
    if py.exists() and (layout.venv / "pyvenv.cfg").is_file():
        return py
    with _VENV_LOCK:  # kinds may apply in parallel threads; create once
        if py.exists() and (layout.venv / "pyvenv.cfg").is_file():
            return py
        return _create_venv(layout, base or base_python())


def _create_venv(layout: Layout, base: Path) -> Path:
    py = venv_python(layout)
    facts = installed_distributions(base)
    if layout.venv.exists():
        shutil.rmtree(layout.venv)  # a broken leftover (no interpreter)
    with staging_dir(layout.staging, "venv-") as tmp:
        target = tmp / "venv"
        uv = _uv()
        if uv:
            argv = [uv, "venv", "--quiet", "--system-site-packages", "--python", str(base)]
        else:
            argv = [str(base), "-m", "venv", "--system-site-packages", "--without-pip"]
        result = proc.run([*argv, str(target)], timeout=VENV_TIMEOUT)
        if result.ok and not uv:
            # pip from the base is usually visible; seed one only when it is not
            py_tmp = target / "bin" / "python"
            if not proc.run([str(py_tmp), "-c", "import pip"], timeout=FACTS_TIMEOUT).ok:
                result = proc.run([str(py_tmp), "-m", "ensurepip"], timeout=VENV_TIMEOUT)
        if not result.ok:
            raise InstallError(
                f"cannot create the Python environment: {result.tail(6)}", where=str(layout.venv)
            )
        if facts.is_venv and facts.site:
            # the base is a venv: chain its site-packages after ours (pth lines append)
            for site in (target / "lib").glob("python*/site-packages"):
                atomic_write_text(site / BASE_PTH, "\n".join(facts.site) + "\n", mode=0o644)
        layout.venv.parent.mkdir(parents=True, exist_ok=True)
        os.replace(target, layout.venv)
    return py


def _uv() -> str | None:
    """uv's path when installs should use it (``$PHOENIX_INSTALLER``: auto, uv or pip)."""
    choice = os.environ.get("PHOENIX_INSTALLER", "auto").strip().lower() or "auto"
    if choice not in {"auto", "uv", "pip"}:
        raise InstallError(
            f"PHOENIX_INSTALLER must be auto, uv or pip, found {choice!r}",
            where="PHOENIX_INSTALLER",
        )
    if choice == "pip":
        return None
    uv = shutil.which("uv")
    if uv is None and choice == "uv":
        raise InstallError("PHOENIX_INSTALLER=uv but uv is not on PATH", where="PHOENIX_INSTALLER")
    if uv is not None and not _uv_can_exclude(uv):
        if choice == "uv":
            raise InstallError(
                f"{uv} is too old: the torch guard needs `uv pip install --excludes`",
                where="PHOENIX_INSTALLER",
                hint="install a newer uv, or set PHOENIX_INSTALLER=pip",
            )
        return None  # an old uv would re-install inherited packages; pip sees them
    return uv


@functools.lru_cache(maxsize=4)
def _uv_can_exclude(uv: str) -> bool:
    """Whether this uv has ``pip install --excludes`` (needed with inherited site-packages)."""
    try:
        result = proc.run([uv, "pip", "install", "--help"], timeout=FACTS_TIMEOUT)
    except proc.Timeout:
        return False
    return result.ok and "--excludes" in result.output


def installer_argv(python: Path) -> list[str]:
    """``uv pip install --python PY`` when uv is on PATH, else ``PY -m pip install``."""
    uv = _uv()
    if uv:
        return [uv, "pip", "install", "--python", str(python)]
    return [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]


def uninstaller_argv(python: Path) -> list[str]:
    """The matching uninstall command."""
    uv = _uv()
    if uv:
        return [uv, "pip", "uninstall", "--python", str(python)]
    return [str(python), "-m", "pip", "uninstall", "--disable-pip-version-check", "-y"]


def installer_name() -> str:
    """``uv`` or ``pip``: what :func:`installer_argv` will use."""
    return "uv" if _uv() else "pip"
