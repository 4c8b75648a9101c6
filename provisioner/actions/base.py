"""The contract every action kind follows, so that plan and apply are one code path.

Each kind has two halves. Its plan module (``plan/nodes.py``, ``plan/models.py``, ...) holds the
facts and the diff, and never writes::

    KIND: str
    def observe(desired: DesiredState, ctx: ObserveContext) -> Facts      # read-only
    def diff(desired: DesiredState, facts: Facts) -> list[Change]          # pure

Its action module (``actions/nodes.py``, ``actions/model_apply.py``, ...; the table is
:data:`provisioner.actions.kinds.APPLY_MODULES`) holds the effects::

    def apply(changes: list[Change], ctx: ApplyContext) -> list[ItemResult]

``apply`` re-checks each change before acting, records state through ``ctx.store`` after each
success, and never raises for one item's failure (it returns a failed :class:`ItemResult`);
only a failure that makes every other item pointless (disk full, volume lock) raises. Before each
effect it calls ``ctx.guard()``; the orchestrator calls it again after each kind, so a lost
volume lock stops the whole apply (:class:`~provisioner.core.errors.LockLostError`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from provisioner.core.config import Versions
from provisioner.core.layout import Layout
from provisioner.manifest.desired import Secrets
from provisioner.plan.change import Change, ItemResult
from provisioner.state.store import StateStore


@dataclass
class ApplyContext:
    """What ``apply`` may use. ``secrets`` must never be logged or passed to a child's env."""

    layout: Layout
    store: StateStore
    versions: Versions
    secrets: Secrets = field(default_factory=Secrets)
    jobs: int = 4
    #: connections for one large file (``downloads.connections``)
    download_connections: int = 8
    verify: bool = False
    force: bool = False
    prune: bool = False
    lock: Any = None
    #: called before each effect (placement, git, install); raises to stop the apply there
    #: (the volume lock's :meth:`~provisioner.state.volume_lock.VolumeLock.check`)
    guard: Callable[[], None] = field(default=lambda: None)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("phoenix.apply"))


class Kind(Protocol):
    """Structural type of an action module."""

    def apply(self, changes: list[Change], ctx: ApplyContext) -> list[ItemResult]: ...
