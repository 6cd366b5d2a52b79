"""Distribution: the control plane's servers, which routers and people talk to.

Owns the xDS-style ``PolicyDistribution`` gRPC service (snapshot stream with
version, nonce, ACK/NACK; outcome and stats reports: ``service``), the
registry of connected routers and what each has accepted (``routers``), the
admin HTTP endpoint for promote, abort and status (``admin``) and the
``skyroute status`` client (``status``).

May import: ``policy``, ``rollout`` and ``learning`` (it serves what they
produce) and the shared ``logs``/``telemetry``. Nothing below imports it.
"""
