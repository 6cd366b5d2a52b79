"""Learning: outcomes in, better routing weights out.

Owns the aggregation of routers' outcome reports (``outcomes``), merging the
fleet's sketches (``fleet``), the learning loop that turns them into live
statistics pushed with the next snapshot (``loop``), tool-use tracking that
gates the cache (``tooluse``) and offline quality evals (``evals``,
``evalsample``).

May import: ``skyroute.control.policy`` and the shared ``logs``/``telemetry``.
Never ``rollout`` or ``distribution``.
"""
