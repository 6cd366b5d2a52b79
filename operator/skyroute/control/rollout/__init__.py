"""Rollout: moving the fleet from one policy version to the next, safely.

Owns the rollout controller (canary weights, pins, promotion, abort and
rollback: ``controller``), the analysis that compares a candidate's outcomes
with the stable version's (``analysis``), rollout state and its history
(``state``), and the rollout state persisted next to a policy folder (``file``).

May import: ``skyroute.control.policy`` and the shared ``logs``/``telemetry``.
Never ``learning`` or ``distribution`` (they are told about rollouts, not asked).
"""
