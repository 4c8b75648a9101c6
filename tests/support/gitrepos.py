"""Local git repositories for tests: commit files, tag, branch; reached by ``file://`` URLs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: A fixed identity and no system or user git config, so every test repo is the same anywhere.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Phoenix Tests",
    "GIT_AUTHOR_EMAIL": "tests@phoenix.invalid",
    "GIT_COMMITTER_NAME": "Phoenix Tests",
    "GIT_COMMITTER_EMAIL": "tests@phoenix.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class Repo:
    """A non-bare repository at ``path`` with a ``main`` branch."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", f"--initial-branch={branch}")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_ENV}
        return subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        """Write ``files`` (path → text; empty text deletes), commit, return the commit id."""
        for rel, text in files.items():
            target = self.path / rel
            if text == "" and target.exists():
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        self.git("add", "-A")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str, annotated: bool = True) -> None:
        if annotated:
            self.git("tag", "-a", name, "-m", name)
        else:
            self.git("tag", name)

    def branch(self, name: str) -> None:
        self.git("branch", "--force", name)

    def clone(self, dest: Path) -> Path:
        """A plain ``git clone`` of this repository into ``dest``."""
        self.git("clone", "--quiet", str(self.path), str(dest))
        return dest


def node_repo(base: Path, name: str, requirements: str | None = None, **extra: str) -> Repo:
    """A custom node repository: ``__init__.py`` plus optional requirements.txt and files."""
    repo = Repo(base / name)
    files = {"__init__.py": f"NODE_CLASS_MAPPINGS = {{}}  # {name}\n", **extra}
    if requirements is not None:
        files["requirements.txt"] = requirements
    repo.commit(files, f"{name} v1")
    return repo
