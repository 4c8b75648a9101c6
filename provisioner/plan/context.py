"""What a kind's ``observe`` may look at while the plan is built. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from provisioner.core.config import Versions
from provisioner.core.layout import Layout
from provisioner.manifest.desired import DesiredState
from provisioner.plan.change import Change
from provisioner.state.store import State


@dataclass(frozen=True)
class ObserveContext:
    """What ``observe`` may look at. Nothing here writes."""

    layout: Layout
    state: State
    versions: Versions
    #: re-hash files instead of trusting size + mtime_ns (``apply --verify``); still read-only
    verify: bool = False


class Kind(Protocol):
    """Structural type of a kind's plan module (its action module holds ``apply``)."""

    KIND: str

    def observe(self, desired: DesiredState, ctx: ObserveContext) -> Any: ...

    def diff(self, desired: DesiredState, facts: Any) -> list[Change]: ...
