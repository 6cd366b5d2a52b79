"""Ingress: the one inbound pipeline behind every door.

- :mod:`.pipeline`: decode → identity → signals → decide → idempotency →
  limits → engine (cache, attempts) → encode → settle, once for all doors;
- :mod:`.admission`: the identity-and-limits stage as the pipeline runs it
  (the rules are the guards' :mod:`.guards.door`);
- :mod:`.facts`: the ``x-skyroute-*`` facts and stored failures, door-neutral;
- :mod:`.types`: the internal request (:class:`~.types.Inbound`), the
  prepared request, the answer and the API-neutral rejection;
- :mod:`.codecs`: one module per API (its request decoder, its answer,
  stream and error encoders);
- :mod:`.guards`: identity, limits and validation checks every request passes.

Transports (``router/transports``) call this layer; it calls the decision,
the engine and the signals, never a transport.
"""
