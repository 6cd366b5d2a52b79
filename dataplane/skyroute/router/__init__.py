"""skyroute's data plane: the stateless router.

A router holds one compiled snapshot at a time (received from the control
plane over the distribution stream), decides per request which pool and
which chain of models to use, calls the providers, falls back, caches, and
reports outcomes. It never imports the control plane: the contract in
``skyroute.v1`` is all the two share.

Public surface:

- :func:`skyroute.router.table.build_table` turns a ``skyroute.v1.Snapshot``
  into a :class:`~skyroute.router.table.RoutingTable` (all per-version work).
- :func:`skyroute.router.decide.decide` is the per-request decision.
- :func:`skyroute.router.server.main` runs a router process.
"""
