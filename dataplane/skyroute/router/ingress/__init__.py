"""Ingress: the one inbound pipeline behind every door.

- :mod:`.pipeline`: decode → guards → signals → decide → idempotency →
  engine (cache, attempts) → encode, once for all doors;
- :mod:`.types`: the internal request (:class:`~.types.Inbound`), the
  prepared request, the answer and the API-neutral rejection;
- :mod:`.codecs`: one module per API (its request decoder, its answer,
  stream and error encoders);
- :mod:`.guards`: identity, limits and validation checks every request passes.

Transports (``router/transports``) call this layer; it calls the decision,
the engine and the signals, never a transport.
"""
