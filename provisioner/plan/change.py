"""The unit of a plan: one :class:`Change` per item, shown by ``plan``, executed by ``apply``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["create", "update", "delete", "unchanged"]
MARKS: dict[str, str] = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}


@dataclass(frozen=True)
class Change:
    """What one item needs, and why.

    ``item`` is the desired item (or the state record for a delete) that ``apply`` acts on; it is
    never rendered. ``size`` is bytes to download when known, else ``None`` ("unknown" offline).
    """

    kind: str
    action: Action
    id: str
    origin: str
    reason: str
    dest: str | None = None
    size: int | None = None
    source: str = ""
    item: Any = field(default=None, compare=False, repr=False)
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def pending(self) -> bool:
        """True when ``apply`` has something to do for this item."""
        return self.action != "unchanged"


@dataclass(frozen=True)
class ItemResult:
    """The outcome of applying one change."""

    id: str
    kind: str
    ok: bool
    message: str = ""
    required: bool = False
