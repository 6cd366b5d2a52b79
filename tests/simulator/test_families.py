"""The simulator stands in for every provider family the contract names."""

from __future__ import annotations

from skyroute.families import FAMILY_NAMES
from skyroute.simulator.scenario import parse_scenario
from skyroute.simulator.server import Simulator


def test_every_contract_family_has_a_wire() -> None:
    sim = Simulator(parse_scenario({}, "test"))
    assert tuple(sim.wires) == FAMILY_NAMES
