"""The contract every action kind follows, so that plan and apply are one code path.

A kind module (``actions/models.py``, ``nodes.py``, ...) exposes::

    KIND: str
    def observe(desired: DesiredState, ctx: ObserveContext) -> Facts      # read-only
    def diff(desired: DesiredState, facts: Facts) -> list[Change]          # pure
    def apply(changes: list[Change], ctx: ApplyContext) -> list[ItemResult]

``apply`` re-checks each change before acting, records state through ``ctx.store`` after each
success, and never raises for one item's failure (it returns a failed :class:`ItemResult`);
only a failure that makes every other item pointless (disk full, volume lock) raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from provisioner.core.config import Versions
from provisioner.core.layout import Layout
from provisioner.manifest.desired import DesiredState, Secrets
from provisioner.plan.change import Change, ItemResult
from provisioner.state.store import State, StateStore


@dataclass(frozen=True)
class ObserveContext:
    """What ``observe`` may look at. Nothing here writes."""

    layout: Layout
    state: State
    versions: Versions
    #: re-hash files instead of trusting size + mtime_ns (``apply --verify``); still read-only
    verify: bool = False


@dataclass
class ApplyContext:
    """What ``apply`` may use. ``secrets`` must never be logged or passed to a child's env."""

    layout: Layout
    store: StateStore
    versions: Versions
    secrets: Secrets = field(default_factory=Secrets)
    jobs: int = 4
    verify: bool = False
    force: bool = False
    prune: bool = False
    lock: Any = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("phoenix.apply"))


class Kind(Protocol):
    """Structural type of an action kind module."""

    KIND: str

    def observe(self, desired: DesiredState, ctx: ObserveContext) -> Any: ...

    def diff(self, desired: DesiredState, facts: Any) -> list[Change]: ...

    def apply(self, changes: list[Change], ctx: ApplyContext) -> list[ItemResult]: ...
