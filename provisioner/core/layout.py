"""Where things live on the workspace root (``PHOENIX_ROOT``, default ``/workspace``).

ComfyUI runs from the image's checkout with ``--base-directory`` pointing here, so user data
(models, custom nodes, inputs, outputs, user settings) survives on a volume and never lands in the
image's checkout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "/workspace"


@dataclass(frozen=True)
class Layout:
    """Paths derived from one workspace root."""

    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model_folder(self, folder: str) -> Path:
        """``models/<folder>`` for a ComfyUI model folder name such as ``loras``."""
        return self.models / folder

    @property
    def custom_nodes(self) -> Path:
        return self.root / "custom_nodes"

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def user(self) -> Path:
        return self.root / "user"

    @property
    def phoenix(self) -> Path:
        return self.root / ".phoenix"

    @property
    def state_file(self) -> Path:
        return self.phoenix / "state.json"

    @property
    def volume_lock(self) -> Path:
        return self.phoenix / "lock"

    @property
    def staging(self) -> Path:
        return self.phoenix / "staging"

    @property
    def run_pid(self) -> Path:
        """``phoenix run``'s pid while it runs (``phoenix stop`` reads it; removed at cleanup)."""
        return self.phoenix / "run" / "phoenix.pid"

    @property
    def logs(self) -> Path:
        return self.phoenix / "logs"

    @property
    def venv(self) -> Path:
        return self.phoenix / "venv"
