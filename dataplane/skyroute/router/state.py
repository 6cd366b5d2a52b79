"""What one router process holds: its identity, its table, its parts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from skyroute.router.engine import Engine
from skyroute.router.table import RoutingTable
from skyroute.v1 import distribution_pb2


@dataclass(slots=True)
class RouterState:
    node: distribution_pb2.Node
    engine: Engine
    table: RoutingTable | None = None
    # Live facts from the distribution client for /debug/status, set by the server.
    status_hook: Callable[[], dict[str, object]] | None = None

    def set_table(self, table: RoutingTable) -> None:
        # One reference swap: requests already running keep the table they started with.
        self.table = table
