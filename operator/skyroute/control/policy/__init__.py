"""Policy: what the user declared, checked and compiled into a snapshot.

Owns the pydantic mirror of the CRDs (``model``), loading YAML documents
(``loader``), validation with the API server's own messages (``validate``),
policies' own tests run through the router's decision code (``policytests``),
the compiler that makes immutable, content-hashed snapshots (``compiler``), the
snapshot store with its last known good version (``store``), glob matching and
the one error shape that names file, object and field (``errors``).

May import: the ``skyroute.v1`` contract, ``skyroute.control.logs`` and
``telemetry``, and (``policytests`` only) the router's pure decision code. It
imports nothing from ``rollout``, ``learning`` or ``distribution``: those build
on policy, never the other way round.
"""
